"""The built-in configs, shipped with the package (ml_collections config files).

  from nas_jax import configs
  config = configs.get_config("quickstart", "smoke")    # or configs.quickstart.get_config("smoke")

On the command line, `--config quickstart:smoke` (a built-in name) works wherever nas_jax is
installed; `--config path/to/file.py:arg` loads any config file.
"""

from __future__ import annotations

import importlib
import os

NAMES = ("quickstart", "darts", "nb201", "evaluate")


def path(name: str) -> str:
    """The file of a built-in config (for `--config`)."""
    if name not in NAMES:
        raise ValueError(f"Unknown built-in config {name!r}; accepted: {', '.join(NAMES)}")
    return os.path.join(os.path.dirname(__file__), f"{name}.py")


def get_config(name: str, arg: str | None = None):
    """The built-in config `name` with its ':arg' string (e.g. 'smoke,space=s5')."""
    path(name)  # the name check
    return importlib.import_module(f"nas_jax.configs.{name}").get_config(arg)


def __getattr__(name: str):  # configs.quickstart, ... without importing all of them first
    if name in NAMES:
        return importlib.import_module(f"nas_jax.configs.{name}")
    raise AttributeError(name)
