"""nas_jax: differentiable NAS with perturbation-based architecture selection in JAX."""

__version__ = "0.1.0"
