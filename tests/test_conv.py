"""Every depthwise_conv impl must equal torch's grouped Conv2d semantics (via 'xla' and a loop)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from nas_jax.kernels import settings
from nas_jax.kernels.depthwise import IMPLS, depthwise_conv

EVEN, ODD = (8, 8), (7, 9)  # odd is also non-square
# (k, stride, padding, dilation, (H, W)): SepConv/DilConv settings of the DARTS space,
# no padding, and k=1; sizes alternate so both parities meet each stride.
CASES = [
    (3, 1, 1, 1, EVEN),
    (3, 2, 1, 1, ODD),
    (5, 1, 2, 1, EVEN),
    (3, 1, 2, 2, ODD),
    (3, 2, 2, 2, EVEN),
    (5, 2, 4, 2, ODD),
    (3, 1, 0, 1, ODD),
    (3, 2, 0, 2, EVEN),
    (1, 2, 0, 1, ODD),
]

# Eager calls would dispatch 'shift' tap by tap (seconds each); jit keeps the file fast.
conv = jax.jit(depthwise_conv, static_argnames=("stride", "padding", "dilation", "impl"))


def _normal(shape, seed, dtype=jnp.float32):
    # numpy, not jax.random: compiling a sampler per shape would dominate the runtime.
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), dtype)


def _inputs(hw, c=3, n=2, k=3, dtype=jnp.float32, seed=0):
    return _normal((n, *hw, c), seed, dtype), _normal((k, k, 1, c), seed + 100, dtype)


def _loop_reference(x, w, stride, padding, dilation):
    """Direct transcription of torch's grouped Conv2d (cross-correlation), in float64."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    n, h, wd, c = x.shape
    k = w.shape[0]
    xp = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    ho = (h + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    wo = (wd + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    out = np.zeros((n, ho, wo, c))
    for oh in range(ho):
        for ow in range(wo):
            for i in range(k):
                for j in range(k):
                    pix = xp[:, oh * stride + i * dilation, ow * stride + j * dilation, :]
                    out[:, oh, ow, :] += pix * w[i, j, 0]
    return out


def _fwd_and_grads(impl, stride, padding, dilation):
    def f(x, w):
        return depthwise_conv(x, w, stride=stride, padding=padding, dilation=dilation, impl=impl)

    @jax.jit
    def run(x, w, ct):
        out, vjp = jax.vjp(f, x, w)
        return (out, *vjp(ct))

    return run


@pytest.mark.parametrize(
    "k, s, p, d, hw",
    CASES,
    ids=[f"k{c[0]}s{c[1]}p{c[2]}d{c[3]}-{c[4][0]}x{c[4][1]}" for c in CASES],
)
def test_impls_match_xla_forward_and_grads(k, s, p, d, hw):
    x, w = _inputs(hw, k=k)
    out_shape = jax.eval_shape(
        lambda x, w: depthwise_conv(x, w, stride=s, padding=p, dilation=d, impl="xla"),
        x,
        w,
    ).shape
    ct = _normal(out_shape, 7)
    ref = _fwd_and_grads("xla", s, p, d)(x, w, ct)
    np.testing.assert_allclose(ref[0], _loop_reference(x, w, s, p, d), atol=1e-5, rtol=1e-5)
    for impl in [i for i in IMPLS if i != "xla"]:
        got = _fwd_and_grads(impl, s, p, d)(x, w, ct)
        for name, a, b in zip(("out", "dx", "dw"), got, ref):
            assert a.shape == b.shape and a.dtype == b.dtype, (impl, name)
            np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5, err_msg=f"{impl} {name}")


@pytest.mark.parametrize("impl", IMPLS)
def test_matches_loop_reference(impl):
    x, w = _inputs((9, 10), c=4, k=5, seed=3)
    got = conv(x, w, stride=2, padding=4, dilation=2, impl=impl)
    np.testing.assert_allclose(got, _loop_reference(x, w, 2, 4, 2), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("impl", IMPLS)
def test_negative_controls_differ(impl):
    """The comparisons above can fail: near-miss semantics give clearly different outputs."""
    x, w = _inputs((8, 8), c=4, k=3, seed=5)
    got = conv(x, w, padding=1, impl=impl)
    flipped = _loop_reference(x, w[::-1, ::-1], 1, 1, 1)  # true convolution, not correlation
    swapped = _loop_reference(x, jnp.swapaxes(w, 0, 1), 1, 1, 1)  # transposed kernel
    shifted = lax.conv_general_dilated(  # same output shape, padding all on one side
        x, w, (1, 1), ((0, 2), (0, 2)), dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=4,
    )  # fmt: skip
    for wrong in (flipped, swapped, shifted):
        assert got.shape == wrong.shape
        assert np.abs(np.asarray(got) - np.asarray(wrong)).max() > 0.5


@pytest.mark.parametrize("impl", IMPLS)
def test_vmap_over_inputs_equals_loop(impl):
    xs = _normal((3, 2, 8, 7, 4), 1)
    _, w = _inputs((8, 7), c=4, k=3)

    def out_and_grads(x, w):
        def loss(x, w):
            out = depthwise_conv(x, w, stride=2, padding=2, dilation=2, impl=impl)
            return jnp.sum(jnp.sin(out)), out

        return jax.grad(loss, (0, 1), has_aux=True)(x, w)[::-1]

    # (out, (dx, dw)) per variant, as when vmapping the supernet over mixing weights.
    batched = jax.jit(jax.vmap(out_and_grads, (0, None)))(xs, w)
    single = jax.jit(out_and_grads)
    loop = jax.tree.map(lambda *a: jnp.stack(a), *[single(x, w) for x in xs])
    for got, want in zip(jax.tree.leaves(batched), jax.tree.leaves(loop)):
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("impl", IMPLS)
def test_grad_of_grad(impl):
    """Reverse-over-reverse (second-order DARTS-style) works for every impl."""
    x, w = _inputs((7, 8), c=3, k=3, seed=4)

    def gnorm(w, impl):
        g = jax.grad(lambda x: jnp.sum(conv(x, w, padding=1, impl=impl) ** 2))(x)
        return jnp.sum(g**2)

    hvp = jax.jit(jax.grad(gnorm), static_argnums=1)
    np.testing.assert_allclose(hvp(w, impl), hvp(w, "xla"), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("impl", IMPLS)
def test_forward_mode(impl):
    """jvp works except for 'shift_vjp' and 'native', whose custom_vjp rules it out
    (documented)."""
    x, w = _inputs((6, 7), k=3, seed=6)

    def jvp(impl):
        f = functools.partial(conv, padding=1, impl=impl)
        return jax.jvp(f, (x, w), (jnp.ones_like(x), jnp.ones_like(w)))[1]

    if impl in ("shift_vjp", "native"):
        with pytest.raises(TypeError, match="forward-mode"):
            jvp(impl)
    else:
        np.testing.assert_allclose(jvp(impl), jvp("xla"), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("impl", IMPLS)
def test_bfloat16(impl):
    x, w = _inputs((8, 8), c=8, k=3, dtype=jnp.bfloat16, seed=2)

    def loss(x, w, impl):
        return jnp.sum(jnp.sin(conv(x, w, padding=2, dilation=2, impl=impl)))

    got = conv(x, w, padding=2, dilation=2, impl=impl)
    assert got.dtype == jnp.bfloat16
    ref = _loop_reference(x.astype(jnp.float32), w.astype(jnp.float32), 1, 2, 2)
    np.testing.assert_allclose(np.asarray(got, np.float32), ref, atol=0.1, rtol=0.02)
    grads = jax.jit(jax.grad(loss, (0, 1)), static_argnums=2)(x, w, impl)
    f32 = (x.astype(jnp.float32), w.astype(jnp.float32))
    refs = jax.jit(jax.grad(loss, (0, 1)), static_argnums=2)(*f32, "xla")
    for g, r in zip(grads, refs):
        assert g.dtype == jnp.bfloat16
        scale = float(jnp.abs(r).max())
        np.testing.assert_allclose(np.asarray(g, np.float32), r, atol=0.05 * scale)


def test_mixed_dtypes_promote():
    x, w = _inputs((6, 6), c=2)
    out = conv(x.astype(jnp.bfloat16), w, padding=1, impl="shift")
    assert out.dtype == jnp.float32


def test_unknown_impl_raises_listing_accepted():
    x, w = _inputs((6, 6))
    with pytest.raises(ValueError, match="'bogus'") as err:
        depthwise_conv(x, w, impl="bogus")
    for name in IMPLS:
        assert name in str(err.value)


def test_bad_kernel_shape_raises():
    x, _ = _inputs((6, 6), c=3)
    with pytest.raises(ValueError, match="kernel"):
        depthwise_conv(x, jnp.ones((3, 3, 3, 3)))


def test_default_and_env_override(monkeypatch):
    assert settings.default("depthwise", "gpu") == "xla"
    assert settings.default("depthwise", "tpu") == "xla"
    assert settings.default("depthwise", "cpu") == "native"
    assert settings.default("depthwise") == settings.default("depthwise", jax.default_backend())
    x, w = _inputs((6, 6))
    env_var = settings.ENV_VARS["depthwise"]
    monkeypatch.setenv(env_var, "bogus")
    with pytest.raises(ValueError, match="bogus"):
        depthwise_conv(x, w, padding=1)
    monkeypatch.setenv(env_var, "dense")
    np.testing.assert_allclose(
        depthwise_conv(x, w, padding=1),
        _loop_reference(x, w, 1, 1, 1),
        atol=1e-5,
        rtol=1e-5,
    )
    # An explicit impl wins over the environment.
    depthwise_conv(x, w, padding=1, impl="xla")
