"""The built-in `quickstart` config ships inside the package: nas_jax/configs/quickstart.py (its
docstring tells the args). This file keeps `--config configs/quickstart.py` working in a clone;
`--config quickstart` works anywhere nas_jax is installed."""

from nas_jax.configs.quickstart import get_config  # noqa: F401
