"""Mixed precision: compute in a low-precision dtype, keep parameters, optimizer state,
BatchNorm running statistics and the loss in float32.

`with_compute_dtype(model, 'bfloat16')` wraps a Flax module so that `apply` casts the
parameters and every floating input (images, mixing weights) to bfloat16, runs the
network, and returns float32 outputs (logits, updated batch statistics). Gradients
flow through the casts back to the float32 parameters, so optax updates float32
master weights. BatchNorm computes its batch statistics in float32 (Flax promotes
them), so the running averages stay float32 too. `init` is the wrapped module's,
in float32: parameter trees are identical with and without the wrapper.

Meant for accelerators (bfloat16 matmul/conv units); XLA:CPU has no fast bfloat16
convolutions, so on CPU it is a correctness path, not a speed-up.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

DTYPES = ("float32", "bfloat16", "float16")


def _cast_floats(tree, dtype):
    def cast(x):
        if isinstance(x, (jax.Array, jnp.ndarray)) and jnp.issubdtype(x.dtype, jnp.floating):
            return x.astype(dtype)
        return x

    return jax.tree.map(cast, tree)


@dataclasses.dataclass(frozen=True)
class ComputeDtype:
    """A Flax module whose `apply` computes in `dtype` (see the module docstring)."""

    module: Any
    dtype: str

    def init(self, *args, **kwargs):
        return self.module.init(*args, **kwargs)

    def apply(self, variables, *args, **kwargs):
        dtype = jnp.dtype(self.dtype)
        variables = dict(variables)
        variables["params"] = _cast_floats(variables["params"], dtype)
        args, kwargs = _cast_floats((args, kwargs), dtype)
        out = self.module.apply(variables, *args, **kwargs)
        return _cast_floats(out, jnp.float32)

    def __getattr__(self, name):  # model.num_classes etc. of the wrapped module
        if name in ("module", "dtype"):
            raise AttributeError(name)
        return getattr(self.module, name)


def with_compute_dtype(model, dtype: str):
    """`model` itself for float32, else a ComputeDtype wrapper."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not accepted; accepted: {', '.join(DTYPES)}")
    return model if dtype == "float32" else ComputeDtype(model, dtype)
