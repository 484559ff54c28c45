"""The built-in `evaluate` config ships inside the package: nas_jax/configs/evaluate.py (its
docstring tells the args). This file keeps `--config configs/evaluate.py` working in a clone;
`--config evaluate` works anywhere nas_jax is installed."""

from nas_jax.configs.evaluate import get_config  # noqa: F401
