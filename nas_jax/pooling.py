"""3x3, padding-1 pooling ops (SPEC 3) as sums and maxima of the 9 strided slices.

XLA:CPU's reduce_window and its transposes (pad-and-scatter for the average,
select-and-scatter for the maximum) are slow: in the NB201 weight step at C=16,
batch 64, the average pools took 221 ms of a 1.1 s gradient. The sliced forms fuse
into one elementwise loop: on a 64x32x32x16 input the average pool's forward is
0.33 ms instead of 2.24 ms, forward+backward 1.8 ms instead of 3.4 ms; the max pool's
forward+backward 5.3 ms instead of 38 ms (2.0 vs 20 ms at stride 2).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from nas_jax import fusion


def _out_size(n: int, stride: int) -> int:
    return (n - 1) // stride + 1


def _taps(xp: jax.Array, ho: int, wo: int, stride: int) -> list[jax.Array]:
    """The 9 strided (ho, wo) slices of the padded input, in window scan order."""
    n, _, _, c = xp.shape
    out = []
    for i in range(3):
        for j in range(3):
            limit = (n, i + (ho - 1) * stride + 1, j + (wo - 1) * stride + 1, c)
            out.append(lax.slice(xp, (0, i, j, 0), limit, (1, stride, stride, 1)))
    return out


def _avg_pool(x, stride):
    _, h, w, _ = x.shape
    ho, wo = _out_size(h, stride), _out_size(w, stride)
    # Low-precision inputs are summed in float32 and rounded once.
    acc = jnp.promote_types(x.dtype, jnp.float32)
    xp = jnp.pad(x.astype(acc), ((0, 0), (1, 1), (1, 1), (0, 0)))
    total = functools.reduce(jnp.add, _taps(xp, ho, wo, stride))

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
        # cotangent (9 slices of one array, not 9 bounds-checked pads; see conv.py).
        gp = jnp.pad(g, ((0, 0), (1, 1), (1, 1), (0, 0)))
        dx = functools.reduce(jnp.add, _taps(gp, shape[1], shape[2], 1))
    else:
        n, h, w, c = shape
        zeros = jnp.zeros((n, h + 2, w + 2, c), g.dtype)
        _, unpick = jax.vjp(lambda xp: _taps(xp, g.shape[1], g.shape[2], stride), zeros)
        dx = unpick([g] * 9)[0][:, 1:-1, 1:-1, :]
    return (dx.astype(ct.dtype),)


avg_pool_3x3.defvjp(_avg_pool_fwd, _avg_pool_bwd)


def _pad_max(x):
    return jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-jnp.inf)


def _max_pool(x, stride):
    _, h, w, _ = x.shape
    return functools.reduce(jnp.maximum, _taps(_pad_max(x), _out_size(h, stride),
                                               _out_size(w, stride), stride))  # fmt: skip


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def max_pool_3x3(x_BxHxWxC: jax.Array, stride: int = 1) -> jax.Array:
    """torch MaxPool2d(3, stride, padding=1): the maximum of the 9 slices (padding is
    -inf). The gradient goes to the first maximal tap of each window in scan order, as
    in torch (and in XLA's select-and-scatter); plain autodiff of `maximum` would split
    it between tied taps."""
    return _max_pool(x_BxHxWxC, stride)


def _max_pool_fwd(x, stride):
    _, h, w, _ = x.shape
    taps = _taps(_pad_max(x), _out_size(h, stride), _out_size(w, stride), stride)
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
    n, h, w, c = shape
    if stride == 1:
        # dx[a] = sum over the 9 windows o containing a of ct[o] where o's first maximal
        # tap is a: slices of one padded ct and one padded index array (see conv.py).
        pad = ((0, 0), (1, 1), (1, 1), (0, 0))
        ctp, firstp = jnp.pad(ct, pad), jnp.pad(first, pad, constant_values=-1)
        cts, firsts = _taps(ctp, h, w, 1), _taps(firstp, h, w, 1)
        zero = jnp.zeros(shape, ct.dtype)
        terms = [jnp.where(f == 8 - t, g, zero) for t, (g, f) in enumerate(zip(cts, firsts))]
        return (functools.reduce(jnp.add, terms),)
    ho, wo = _out_size(h, stride), _out_size(w, stride)
    zeros = jnp.zeros((n, h + 2, w + 2, c), ct.dtype)
    _, unpick = jax.vjp(lambda xp: _taps(xp, ho, wo, stride), zeros)
    zero = jnp.zeros_like(ct)
    dxp = unpick([jnp.where(first == t, ct, zero) for t in range(9)])[0]
    return (dxp[:, 1:-1, 1:-1, :],)


max_pool_3x3.defvjp(_max_pool_fwd, _max_pool_bwd)
