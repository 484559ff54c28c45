"""Depthwise convolution behind one function, `depthwise_conv`, its implementation chosen
by the `depthwise` setting (`nas_jax.kernels.settings`).

Impls (all equal torch's grouped Conv2d; see `depthwise_conv`):
  xla        lax.conv_general_dilated(feature_group_count=C); the default off CPU.
  shift      sum over the k*k taps of strided/dilated input slices times per-channel
             weights; plain autodiff.
  shift_vjp  'shift' forward with a custom VJP: dx at stride 1 is the shift conv of ct
             with the flipped kernel, else autodiff's transpose; dw is the k*k reductions
             per L2-sized batch chunk, in a scan. No forward-mode AD (jax.jvp/jacfwd).
  dense      dense conv with the (k, k, C, C) diagonal kernel: C times the FLOPs.
  native     C++ XLA FFI kernels (`nas_jax.kernels.native`) for float32 on CPU, built on
             first use; 'shift_vjp' for other dtypes or where they cannot be built. No
             forward-mode AD. The default on CPU; `layers.relu_dw_pw` also fuses ReLU -
             depthwise - pointwise into one call where `native_active`.

Why: XLA:CPU's grouped convolution is an order of magnitude slower than a fused loop over
the taps, worst in the stride-2 backward, and the native kernels do one pass per image
with the intermediates in cache. 'shift_vjp' is the fallback and the reference the tests
compare against. Numbers: experiments/results/README.md ("Depthwise convolution").
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from nas_jax.kernels import native, settings
from nas_jax.kernels.fusion import materialize

IMPLS = settings.ACCEPTED["depthwise"]
_DW_CHUNK_BYTES = 256 * 1024
_DN = ("NHWC", "HWIO", "NHWC")


def _resolve_impl(impl: str | None) -> str:
    if impl is None:
        return settings.current("depthwise")
    return settings.check("depthwise", impl, "the impl argument", allow_auto=False)


def _out_size(size: int, k: int, stride: int, padding: int, dilation: int) -> int:
    return (size + 2 * padding - dilation * (k - 1) - 1) // stride + 1


def _conv(x, w, stride, padding, dilation, groups):
    pad = ((padding, padding), (padding, padding))
    return lax.conv_general_dilated(
        x, w, (stride, stride), pad, rhs_dilation=(dilation, dilation),
        dimension_numbers=_DN, feature_group_count=groups,
    )  # fmt: skip


def _xla(x, w, stride, padding, dilation):
    return _conv(x, w, stride, padding, dilation, groups=x.shape[-1])


def _dense(x, w, stride, padding, dilation):
    # XLA:CPU's dense conv path is far better optimised than its grouped one, so
    # spending C times the FLOPs on a diagonal kernel can still win for small C.
    c = x.shape[-1]
    dense_w = w[:, :, 0, None, :] * jnp.eye(c, dtype=w.dtype)  # (kh, kw, I=C, O=C)
    return _conv(x, dense_w, stride, padding, dilation, groups=1)


def tap_slices(x, kh, kw, stride, padding, dilation):
    """Yields ((i, j), slice of the zero-padded input that tap (i, j) multiplies), in
    window scan order. Shared with `nas_jax.kernels.pooling` (which pads first, padding=0)."""
    n, h, wd, c = x.shape
    ho = _out_size(h, kh, stride, padding, dilation)
    wo = _out_size(wd, kw, stride, padding, dilation)
    if padding:
        x = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    for i in range(kh):
        for j in range(kw):
            h0, w0 = i * dilation, j * dilation
            limit = (n, h0 + (ho - 1) * stride + 1, w0 + (wo - 1) * stride + 1, c)
            yield (i, j), lax.slice(x, (0, h0, w0, 0), limit, (1, stride, stride, 1))


def _acc_dtype(dtype):
    # Low-precision inputs accumulate the k*k products in float32, so a bfloat16
    # result is rounded once rather than k*k times.
    return jnp.promote_types(dtype, jnp.float32)


def _shift(x, w, stride, padding, dilation):
    # Sum of k*k strided slices times per-channel weights: purely elementwise,
    # so XLA fuses the whole thing into one loop over the output.
    # Upcasting before slicing also keeps the transposed (pad-and-add) dx path in
    # float32: summing k*k padded bfloat16 cotangents was ~40x slower on CPU.
    kh, kw = w.shape[:2]
    acc = _acc_dtype(x.dtype)
    out = None
    for (i, j), xs in tap_slices(x.astype(acc), kh, kw, stride, padding, dilation):
        term = xs * w[i, j, 0].astype(acc)
        out = term if out is None else out + term
    return out.astype(x.dtype)


def _shift_dw_chunks(x, ct, kh, kw, stride, padding, dilation):
    # Autodiff of 'shift' gives k*k reductions over the whole batch, each of a
    # materialised shifted copy of x: memory-bound, and the bulk of f+b time.
    # Scanning over batch chunks that fit in L2 makes those passes hit cache.
    n, acc = x.shape[0], _acc_dtype(x.dtype)
    nb = max(1, min(n, _DW_CHUNK_BYTES // (x[0].size * x.dtype.itemsize)))
    while n % nb:
        nb -= 1

    def chunk(total, xc_ctc):
        xc, ctc = xc_ctc
        taps = [
            jnp.sum(xs * ctc, axis=(0, 1, 2))
            for _, xs in tap_slices(xc, kh, kw, stride, padding, dilation)
        ]
        return total + jnp.stack(taps).reshape(kh, kw, 1, -1), None

    def split(a):
        return a.reshape(n // nb, nb, *a.shape[1:])

    init = jnp.zeros((kh, kw, 1, x.shape[-1]), acc)
    return lax.scan(chunk, init, (split(x.astype(acc)), split(ct.astype(acc))))[0]


# Same forward as 'shift'; only the weight gradient differs. Caveat of
# custom_vjp: no forward-mode AD (jax.jvp / jacfwd); use 'shift' for that.
@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _shift_vjp(x, w, stride, padding, dilation):
    return _shift(x, w, stride, padding, dilation)


def _shift_vjp_fwd(x, w, stride, padding, dilation):
    return _shift(x, w, stride, padding, dilation), (x, w)


def _shift_vjp_bwd(stride, padding, dilation, res, ct):
    x, w = res
    # dx sums k*k padded copies of ct and dw reads it k*k times: materialized first,
    # or the elementwise chain that produced it is fused into every one of them.
    ct = materialize(ct)
    kh, kw = w.shape[:2]
    q = (kh - 1) * dilation - padding
    if stride == 1 and kh == kw and q >= 0:
        # The transposed conv is a conv of ct with the flipped kernel: k*k slices of one
        # padded array. Autodiff's form (k*k pads of ct summed) fuses into the node's
        # gradient sum as hundreds of bounds-checked pads (228 ms for one s5 node).
        dx = _shift(ct, w[::-1, ::-1], 1, q, dilation).astype(x.dtype)
    else:
        dx = jax.vjp(lambda x: _shift(x, w, stride, padding, dilation), x)[1](ct)[0]
    dw = _shift_dw_chunks(x, ct, kh, kw, stride, padding, dilation)
    return dx, dw.astype(w.dtype)


_shift_vjp.defvjp(_shift_vjp_fwd, _shift_vjp_bwd)


def native_active(dtype, impl: str | None = None) -> bool:
    """Whether `depthwise_conv` (and the fused ReLU-depthwise-pointwise of
    `nas_jax.ops`) runs the C++ kernels for inputs of `dtype`: impl 'native', float32,
    kernels built. Read at trace time."""
    return (
        _resolve_impl(impl) == "native"
        and dtype == jnp.float32
        and jax.default_backend() == "cpu"
        and native.available()
    )


def _native(x, w, stride, padding, dilation):
    # float32 on CPU through the C++ kernels (nas_jax.kernels.native); other dtypes and
    # backends, or no kernels (no compiler), through 'shift_vjp'.
    if native_active(x.dtype, "native"):
        return native.forward(x, w, stride, padding, dilation)
    return _shift_vjp(x, w, stride, padding, dilation)


_IMPL_FNS = {
    "xla": _xla, "shift": _shift, "shift_vjp": _shift_vjp, "dense": _dense, "native": _native,
}  # fmt: skip


def depthwise_conv(
    x: jax.Array,
    kernel: jax.Array,
    *,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
    impl: str | None = None,
) -> jax.Array:
    """Depthwise conv equal to torch `Conv2d(C, C, k, stride, padding, dilation, groups=C,
    bias=False)` in NHWC.

    x: (N, H, W, C); kernel: (kh, kw, 1, C), Flax's HWIO layout for
    `nn.Conv(feature_group_count=C)`. `padding` is symmetric zero padding on H and W.
    `impl=None` takes the `depthwise` setting (`nas_jax.kernels.settings`), read when the
    call is traced: configure it (or set $NAS_JAX_DEPTHWISE_IMPL) before the first jit.
    Inputs and kernel are promoted to a common dtype, which the result has.
    """
    impl = _resolve_impl(impl)
    if x.ndim != 4 or kernel.ndim != 4 or kernel.shape[2:] != (1, x.shape[-1]):
        raise ValueError(
            f"expected x (N,H,W,C) and kernel (kh,kw,1,C); got {x.shape} and {kernel.shape}"
        )
    dtype = jnp.result_type(x, kernel)
    return _IMPL_FNS[impl](x.astype(dtype), kernel.astype(dtype), stride, padding, dilation)
