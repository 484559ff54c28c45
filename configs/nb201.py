"""The built-in `nb201` config ships inside the package: nas_jax/configs/nb201.py (its
docstring tells the args). This file keeps `--config configs/nb201.py` working in a clone;
`--config nb201` works anywhere nas_jax is installed."""

from nas_jax.configs.nb201 import get_config  # noqa: F401
