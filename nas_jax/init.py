"""PyTorch-default initialisation of a whole variable tree from one random draw.

`model.init` under jit compiles one threefry computation per parameter; a supernet
has hundreds of parameters, which costs a minute or more of XLA:CPU compile time.
Here the shapes come from `jax.eval_shape` (tracing only) and every uniform parameter
is a slice of a single draw, so initialisation compiles in about a second.

Rules (SPEC 3.3): conv/linear kernels U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with
fan_in = prod(kernel.shape[:-1]) (depthwise: k*k); linear bias likewise with the
kernel's fan_in; BatchNorm scale 1, bias 0, running mean 0, running var 1.
"""

from __future__ import annotations

import math

import flax
import jax
import jax.numpy as jnp
import numpy as np


def _bound(path: tuple[str, ...], shape, siblings: dict) -> float | None:
    """Half-width of the uniform init, or None for a constant-initialised leaf."""
    name = path[-1]
    if name == "kernel":
        return 1.0 / math.sqrt(int(np.prod(shape[:-1])))
    if name == "bias" and "kernel" in siblings:
        return 1.0 / math.sqrt(int(np.prod(siblings["kernel"].shape[:-1])))
    return None


def _constant(path: tuple[str, ...]) -> float:
    name = path[-1]
    if name in ("scale", "var"):
        return 1.0
    if name in ("bias", "mean"):
        return 0.0
    raise ValueError(f"No initialisation rule for variable {'/'.join(path)}")


def init_variables(model, key: jax.Array, *args, **kwargs) -> dict:
    """Variables of `model.init(rngs, *args, **kwargs)`, initialised as PyTorch would."""
    dummy = jax.random.key(0)
    rngs = {"params": dummy, "noise": dummy, "dropout": dummy}
    shapes = jax.eval_shape(lambda: model.init(rngs, *args, **kwargs))  # traces, no compile
    flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(shapes))
    parents: dict[tuple, dict] = {}
    for path, leaf in flat.items():
        parents.setdefault(path[:-1], {})[path[-1]] = leaf
    uniform = []
    for path, leaf in flat.items():
        bound = _bound(path, leaf.shape, parents[path[:-1]]) if path[0] == "params" else None
        if bound is not None:
            uniform.append((path, bound))
    total = sum(int(np.prod(flat[p].shape)) for p, _ in uniform)
    bounds = [np.full(int(np.prod(flat[p].shape)), b, np.float32) for p, b in uniform]
    draws = _scaled_uniform(key, jnp.asarray(np.concatenate(bounds))) if total else None
    out, offset = {}, 0
    for path, _ in uniform:
        shape, dtype = flat[path].shape, flat[path].dtype
        n = int(np.prod(shape))
        out[path] = draws[offset : offset + n].reshape(shape).astype(dtype)
        offset += n
    for path, leaf in flat.items():
        if path not in out:
            out[path] = jnp.full(leaf.shape, _constant(path), leaf.dtype)
    return flax.traverse_util.unflatten_dict(out)


@jax.jit
def _scaled_uniform(key, bounds_N):
    return jax.random.uniform(key, bounds_N.shape, minval=-1.0, maxval=1.0) * bounds_N
