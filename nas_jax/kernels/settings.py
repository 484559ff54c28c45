"""Backend settings of the CPU performance layer: resolved from configuration, recorded.

Three settings change the compiled program or the process, so a run must say which it
used:

  depthwise    the depthwise conv's implementation: native | shift_vjp | shift | xla | dense
  materialize  the fusion barrier at every cell node: cond | none
  malloc       the host allocator: reuse (glibc keeps XLA's freed buffers) | default

Each resolves the same way: an explicit value in the config section (anything but
'auto') wins; else its environment variable ($NAS_JAX_DEPTHWISE_IMPL,
$NAS_JAX_MATERIALIZE, $NAS_JAX_MALLOC) if set; else the backend's default (native and
cond on CPU, xla and none elsewhere; reuse on Linux with glibc). A bad value raises a
one-line `ValueError` naming the value, where it came from and the accepted values.

`configure(section)` resolves them once, applies the allocator, fixes them for the rest
of the process and returns what it resolved, as JSON-able data for the run's record.
Until it is called, every read resolves afresh from the environment and the defaults,
so library use and tests that set the environment variables behave as before. What is
reported is what runs: a resolved 'native' whose kernels cannot be built (no compiler,
$NAS_JAX_NATIVE=0, not on CPU) reports 'shift_vjp', the path that then computes the conv,
and `native_kernels` says why.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from collections.abc import Iterator, Mapping

import jax

from nas_jax.kernels import allocator, native

ACCEPTED = {
    "depthwise": ("native", "shift_vjp", "shift", "xla", "dense"),
    "materialize": ("cond", "none"),
    "malloc": ("reuse", "default"),
}
ENV_VARS = {
    "depthwise": "NAS_JAX_DEPTHWISE_IMPL",
    "materialize": "NAS_JAX_MATERIALIZE",
    "malloc": "NAS_JAX_MALLOC",
}
# (per backend, elsewhere): the measured-best on CPU (experiments/results/README.md); off
# CPU nothing was measured, and XLA's own conv and fusion are the safe choice.
_BACKEND_DEFAULTS = {
    "depthwise": ({"cpu": "native"}, "xla"),
    "materialize": ({"cpu": "cond"}, "none"),
}
_FALLBACK = "shift_vjp"  # what a resolved 'native' computes where the kernels do not run


@dataclasses.dataclass(frozen=True)
class Settings:
    """The settings in effect, and where each came from ('config', 'env <VAR>', 'default
    for <backend or platform>')."""

    backend: str
    depthwise: str
    materialize: str
    malloc: str
    native_kernels: str  # 'built' | 'unavailable: <why>' | 'disabled: ...' | 'not used'
    source: Mapping[str, str]

    def as_dict(self) -> dict:
        return {**dataclasses.asdict(self), "source": dict(self.source)}


_configured: Settings | None = None


def check(name: str, value, origin: str, *, allow_auto: bool = True) -> str:
    """`value` if it is accepted for setting `name`, else a one-line ValueError that
    names it, `origin` (where it came from) and the accepted values."""
    accepted = (("auto",) if allow_auto else ()) + ACCEPTED[name]
    if value not in accepted:
        raise ValueError(
            f"kernels.{name}={value!r} from {origin} is not accepted; "
            f"accepted: {', '.join(accepted)}"
        )
    return value


def _platform() -> str:
    return "linux-glibc" if allocator.unsupported() is None else sys.platform


def default(name: str, backend: str | None = None) -> str:
    """The default of setting `name` on `backend` (default: `jax.default_backend()`)."""
    if name == "malloc":
        return "reuse" if allocator.unsupported() is None else "default"
    per_backend, other = _BACKEND_DEFAULTS[name]
    return per_backend.get(backend or jax.default_backend(), other)


def _requested(name: str, section: Mapping) -> tuple[str | None, str]:
    """The explicit choice for `name` (config, else environment) and its source, or
    (None, '') for the default. Checks the value; needs no backend."""
    value = section.get(name)
    if value is not None and check(name, value, "the config") != "auto":
        return value, "config"
    var = ENV_VARS[name]
    value = os.environ.get(var)
    if value and check(name, value, f"${var}") != "auto":
        return value, f"env {var}"
    return None, ""


def _resolve(name: str, section: Mapping, backend: str | None) -> tuple[str, str]:
    value, source = _requested(name, section)
    if value is None:
        where = _platform() if name == "malloc" else backend or jax.default_backend()
        value, source = default(name, backend), f"default for {where}"
    return value, source


def _depthwise_in_effect(value: str, backend: str) -> tuple[str, str]:
    """(the impl that runs, the native kernels' status) for a resolved `value`."""
    if value != "native":
        return value, "not used"
    if backend != "cpu":
        return _FALLBACK, f"unavailable: backend is {backend}"
    status = native.status()
    return ("native" if status == "built" else _FALLBACK), status


def _malloc_in_effect(value: str, source: str) -> tuple[str, str]:
    """(the allocator mode in effect, its source) for a resolved `value`."""
    if value == "reuse" and not allocator.applied():
        why = allocator.unsupported() or "not applied (nas_jax.kernels.configure applies it)"
        return "default", f"{source}; reuse not in effect: {why}"
    if value == "default" and allocator.applied():
        return "reuse", f"{source}; but reuse was applied earlier in this process"
    return value, source


def _settle(section: Mapping) -> Settings:
    backend = jax.default_backend()
    resolved = {name: _resolve(name, section, backend) for name in ACCEPTED}
    depthwise, native_kernels = _depthwise_in_effect(resolved["depthwise"][0], backend)
    malloc, malloc_source = _malloc_in_effect(*resolved["malloc"])
    source = {name: src for name, (_, src) in resolved.items()} | {"malloc": malloc_source}
    return Settings(backend, depthwise, resolved["materialize"][0], malloc, native_kernels,
                    source)  # fmt: skip


def _as_section(section) -> Mapping:
    if section is None:
        return {}
    items = dict(section.items()) if hasattr(section, "items") else dict(section)
    unknown = sorted(set(items) - set(ACCEPTED))
    if unknown:
        raise ValueError(f"unknown kernels setting(s) {unknown}; accepted: {', '.join(ACCEPTED)}")
    return items


def _traced() -> tuple[str, str] | None:
    """What trace-time code reads now: (depthwise, materialize); None if unreadable."""
    try:
        return current("depthwise"), current("materialize")
    except ValueError:
        return None


def _fix(new: Settings | None) -> None:
    """Makes `new` (None: lazy resolution) the active settings. Functions jitted before
    keep their traces, so JAX's caches are cleared when what traces read changes."""
    global _configured
    before = _traced()
    _configured = new
    if _traced() != before or before is None:
        jax.clear_caches()


def validate(section=None) -> Mapping:
    """Checks a section and the environment overrides without applying anything;
    ValueError (one line) for an unknown key or a bad value. Returns the section."""
    section = _as_section(section)
    for name in ACCEPTED:
        _requested(name, section)
    return section


def configure(section=None) -> dict:
    """Resolves the settings from `section` (a mapping with keys depthwise, materialize,
    malloc; missing keys and None mean 'auto'), applies the allocator when malloc is
    'reuse', and fixes the settings that trace-time code reads from now on. Returns
    `describe()`: backend, depthwise, materialize, malloc, native_kernels, source.

    Call it before the first JAX computation: the allocator settings must precede the
    backend's threads. Resolving 'native' builds the kernels (seconds, cached on disk)."""
    section = validate(section)  # every value checked before anything is applied
    malloc, _ = _resolve("malloc", section, backend=None)
    if malloc == "reuse":
        allocator.apply()
    _fix(_settle(section))
    return _configured.as_dict()


@contextlib.contextmanager
def configured(section=None) -> Iterator[dict]:
    """`configure(section)` for the duration of a `with` block (a run), then the settings
    that were in effect before; yields what `configure` returns."""
    before = _configured
    resolved = configure(section)
    try:
        yield resolved
    finally:
        _fix(before)


def reset() -> None:
    """Forgets `configure`: reads resolve from the environment and defaults again (tests).
    The allocator, once applied, stays."""
    _fix(None)


def active() -> Settings:
    """The settings in effect: the configured ones, else resolved now from the environment
    and the defaults."""
    return _configured or _settle({})


def describe() -> dict:
    """`active()` as JSON-able data, for run records and benchmark files."""
    return active().as_dict()


def current(name: str) -> str:
    """One setting in effect ('depthwise' or 'materialize'), for trace-time readers: the
    configured value, else resolved now (cheaper than `active()`)."""
    if _configured is not None:
        return getattr(_configured, name)
    backend = jax.default_backend()
    value, _ = _resolve(name, {}, backend)
    return _depthwise_in_effect(value, backend)[0] if name == "depthwise" else value


def configure_allocator() -> bool:
    """Applies the allocator settings when malloc resolves to 'reuse' (configured, else
    $NAS_JAX_MALLOC, else the platform default); True when they are in effect. For entry
    points that do not call `configure`."""
    value = _configured.malloc if _configured else _resolve("malloc", {}, None)[0]
    return value == "reuse" and allocator.apply()
