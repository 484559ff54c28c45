"""The built-in `darts` config ships inside the package: nas_jax/configs/darts.py (its
docstring tells the args). This file keeps `--config configs/darts.py` working in a clone;
`--config darts` works anywhere nas_jax is installed."""

from nas_jax.configs.darts import get_config  # noqa: F401
