"""3x3, padding-1 pooling ops (SPEC 3) as sums and maxima of the 9 strided slices.

XLA:CPU's reduce_window and its transposes (pad-and-scatter for the average,
select-and-scatter for the maximum) are slow; the sliced forms fuse into one
elementwise loop, forward and backward. Numbers: experiments/results/README.md ("Pools").
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from nas_jax.kernels import fusion
from nas_jax.kernels.depthwise import tap_slices

_PAD = ((0, 0), (1, 1), (1, 1), (0, 0))


def _taps(xp: jax.Array, stride: int) -> list[jax.Array]:
    """The 9 strided slices of the already padded input, in window scan order."""
    return [tap for _, tap in tap_slices(xp, 3, 3, stride, 0, 1)]


def _untap(cts: list[jax.Array], shape: tuple[int, ...], stride: int) -> jax.Array:
    """Transpose of `_taps` on a padded `shape` input, cropped back to the unpadded x:
    the gradient of x when tap t has cotangent cts[t]."""
    n, h, w, c = shape
    _, unpick = jax.vjp(lambda xp: _taps(xp, stride), jnp.zeros((n, h + 2, w + 2, c), cts[0].dtype))
    return unpick(cts)[0][:, 1:-1, 1:-1, :]


def _avg_pool(x, stride):
    _, h, w, _ = x.shape
    # Low-precision inputs are summed in float32 and rounded once.
    acc = jnp.promote_types(x.dtype, jnp.float32)
    total = functools.reduce(jnp.add, _taps(jnp.pad(x.astype(acc), _PAD), stride))
    ho, wo = total.shape[1:3]

    def counts(size, out):
        start = np.arange(out) * stride - 1
        return np.minimum(start + 2, size - 1) - np.maximum(start, 0) + 1

    inv = (1.0 / np.outer(counts(h, ho), counts(w, wo))).astype(np.float32)
    inv = jnp.asarray(inv[None, :, :, None], acc)
    return (total * inv).astype(x.dtype), inv


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def avg_pool_3x3(x_BxHxWxC: jax.Array, stride: int = 1) -> jax.Array:
    """torch AvgPool2d(3, stride, padding=1, count_include_pad=False): the sum of the 9
    slices times 1 / (number of in-image taps), a constant of the shape."""
    return _avg_pool(x_BxHxWxC, stride)[0]


def _avg_pool_fwd(x, stride):
    y, inv = _avg_pool(x, stride)
    return y, (x.shape, inv)


def _avg_pool_bwd(stride, res, ct):
    shape, inv = res
    g = fusion.materialize(ct).astype(inv.dtype) * inv
    if stride == 1:
        # The box filter is symmetric: dx is the 3x3 box sum of the padded, scaled
        # cotangent (9 slices of one array, not 9 bounds-checked pads).
        dx = functools.reduce(jnp.add, _taps(jnp.pad(g, _PAD), 1))
    else:
        dx = _untap([g] * 9, shape, stride)
    return (dx.astype(ct.dtype),)


avg_pool_3x3.defvjp(_avg_pool_fwd, _avg_pool_bwd)


def _max_taps(x, stride):
    return _taps(jnp.pad(x, _PAD, constant_values=-jnp.inf), stride)


def _max_pool(x, stride):
    return functools.reduce(jnp.maximum, _max_taps(x, stride))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def max_pool_3x3(x_BxHxWxC: jax.Array, stride: int = 1) -> jax.Array:
    """torch MaxPool2d(3, stride, padding=1): the maximum of the 9 slices (padding is
    -inf). The gradient goes to the first maximal tap of each window in scan order, as
    in torch (and in XLA's select-and-scatter); plain autodiff of `maximum` would split
    it between tied taps."""
    return _max_pool(x_BxHxWxC, stride)


def _max_pool_fwd(x, stride):
    taps = _max_taps(x, stride)
    y = functools.reduce(jnp.maximum, taps)
    # Index of the first maximal tap, as a chain of 9 selects that each use the last
    # once: a mask chain (`free &= ~first`) would be fused into each of the 9 gradient
    # terms and duplicated at every link (270 ms for one 64x32x32x32 backward).
    first = jnp.full(y.shape, len(taps), jnp.int8)
    for t in reversed(range(len(taps))):
        first = jnp.where(taps[t] == y, jnp.int8(t), first)
    # Materialized, or each of the 9 gradient terms would recompute the chain.
    return y, (x.shape, fusion.materialize(first))


def _max_pool_bwd(stride, res, ct):
    shape, first = res
    ct = fusion.materialize(ct)  # read by 9 terms
    if stride == 1:
        # dx[a] = sum over the 9 windows o containing a of ct[o] where o's first
        # maximal tap is a: slices of one padded ct and one padded index array.
        cts = _taps(jnp.pad(ct, _PAD), 1)
        firsts = _taps(jnp.pad(first, _PAD, constant_values=-1), 1)
        zero = jnp.zeros(shape, ct.dtype)
        terms = [jnp.where(f == 8 - t, g, zero) for t, (g, f) in enumerate(zip(cts, firsts))]
        return (functools.reduce(jnp.add, terms),)
    zero = jnp.zeros_like(ct)
    return (_untap([jnp.where(first == t, ct, zero) for t in range(9)], shape, stride),)


max_pool_3x3.defvjp(_max_pool_fwd, _max_pool_bwd)
