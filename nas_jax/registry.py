"""Named registries for the library's variation points.

Search methods, selectors, space families, search spaces and datasets are each a
`Registry`: one small entry per variant, registered by name in the module that defines
it. Config validation reads the registries, so a new entry (even one registered from a
user's script or a test) is accepted everywhere without editing the library.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar, overload

from nas_jax.config_lib import ConfigError

T = TypeVar("T")


class UnknownNameError(ConfigError, KeyError):
    """A name that no entry of a registry has; the message lists the accepted names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry(Generic[T]):
    """name -> entry, in registration order.

    `kind` names what the entries are ("search method", "dataset", ...) in errors.
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    @overload
    def register(self, name: str, entry: T, *, replace: bool = False) -> T: ...

    @overload
    def register(self, name: str, *, replace: bool = False) -> Callable[[T], T]: ...

    def register(self, name, entry=None, *, replace=False):
        """Adds `entry` under `name` (or decorates it). A name is taken once unless
        `replace`: two modules silently fighting over a name would be a bug."""

        def add(e):
            if name in self._entries and not replace:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = e
            return e

        return add if entry is None else add(entry)

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; accepted: {', '.join(self._entries)}"
            ) from None

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def items(self):
        return self._entries.items()

    def __contains__(self, name) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"
