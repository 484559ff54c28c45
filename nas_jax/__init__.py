"""nas_jax: differentiable NAS with perturbation-based architecture selection in JAX.

  import nas_jax
  config = nas_jax.configs.get_config("quickstart", "smoke")
  result = nas_jax.run(config, "/tmp/w")   # search + PT selection: result.genotype, ...

The API (`run`, `run_search`, `run_select`, `run_evaluate`, `load`, `RunResult`,
`enable_logging`) is
in nas_jax/api.py; it is imported on first use, so `import nas_jax` stays light.
"""

__version__ = "0.1.0"

_API = ("run", "run_search", "run_select", "run_evaluate", "load", "RunResult",
        "enable_logging")  # fmt: skip


def __getattr__(name: str):
    if name in _API:
        from nas_jax import api

        return getattr(api, name)
    if name == "configs":
        import importlib

        return importlib.import_module("nas_jax.configs")
    raise AttributeError(f"module 'nas_jax' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_API, "configs"])
