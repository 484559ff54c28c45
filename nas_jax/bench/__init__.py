"""`python -m nas_jax.bench`: step times of the supernets, scoring and retraining."""
