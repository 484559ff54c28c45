"""The C++ XLA:CPU kernels (nas_jax.kernels.native) against independent references: a float64 loop
transcription of torch's grouped conv, XLA's grouped conv, and the ops composed in JAX."""

import json
import os
import subprocess
import sys

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_conv import _loop_reference

from nas_jax import ops
from nas_jax.kernels import depthwise_conv, native, settings

pytestmark = pytest.mark.skipif(
    native._compiler() is None, reason="no C++ compiler: the kernels cannot be built"
)

# (k, stride, padding, dilation, (H, W)): the DARTS settings, odd and non-square sizes,
# no padding, k=1, a kernel wider than the image, and k=2/4 (the general kernel-gradient
# loop instead of the per-width one).
CASES = [
    (3, 1, 1, 1, (8, 8)),
    (3, 2, 1, 1, (7, 9)),
    (5, 1, 2, 1, (9, 7)),
    (3, 1, 2, 2, (7, 9)),
    (5, 2, 4, 2, (7, 9)),
    (3, 2, 0, 2, (8, 8)),
    (1, 2, 0, 1, (7, 9)),
    (7, 1, 3, 1, (5, 6)),
    (5, 1, 4, 2, (3, 3)),
    (2, 1, 0, 1, (6, 7)),
    (4, 2, 1, 1, (9, 8)),
]
C = 29  # 16 + 8 + 4 + 1: every vector width of the channel loop


def _normal(shape, seed):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _xla(x, w, s, p, d):
    return depthwise_conv(x, w, stride=s, padding=p, dilation=d, impl="xla")


def _close(got, want, tol=2e-5):
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        scale = max(1.0, float(np.max(np.abs(w))))
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), atol=tol * scale, rtol=tol)


def test_available_here():
    """With a compiler the kernels must build and register (the default CPU path)."""
    assert native.available()


@pytest.mark.parametrize("k,s,p,d,hw", CASES)
def test_depthwise_matches_loop_and_xla_gradients(k, s, p, d, hw):
    x, w = _normal((2, *hw, C), 0), _normal((k, k, 1, C), 1)
    out = jax.jit(native.forward, static_argnums=(2, 3, 4))(x, w, s, p, d)
    _close(out, _loop_reference(x, w, s, p, d))
    ct = _normal(out.shape, 2)
    loss = lambda f: lambda x, w: jnp.vdot(f(x, w, s, p, d), ct)
    grads = jax.jit(jax.grad(loss(native.forward), (0, 1)))(x, w)
    _close(grads, jax.jit(jax.grad(loss(_xla), (0, 1)))(x, w))


@pytest.mark.parametrize("k,s,p,d,hw", CASES[:6])
def test_sep_matches_composed_ops(k, s, p, d, hw):
    """ReLU - depthwise - pointwise in one call == the three ops in JAX (XLA's conv):
    outputs, first and second derivatives."""
    m = 21
    x, w, pw = _normal((2, *hw, C), 3), _normal((k, k, 1, C), 4), _normal((C, m), 5)
    ref = lambda x, w, pw: jnp.einsum("nhwc,cm->nhwm", _xla(jax.nn.relu(x), w, s, p, d), pw)
    fused = lambda x, w, pw: native.sep(x, w, pw, s, p, d)
    out = jax.jit(fused)(x, w, pw)
    _close(out, ref(x, w, pw))
    ct = _normal(out.shape, 6)

    def grads(f):
        return jax.grad(lambda x, w, pw: jnp.vdot(f(x, w, pw), ct), (0, 1, 2))

    _close(jax.jit(grads(fused))(x, w, pw), grads(ref)(x, w, pw))

    def second(f):  # reverse over reverse, as the exact second-order DARTS step
        return jax.grad(lambda *a: sum(jnp.sum(jnp.sin(g)) for g in grads(f)(*a)), (0, 1, 2))

    _close(jax.jit(second(fused))(x, w, pw), second(ref)(x, w, pw), tol=1e-4)


def test_sep_applies_relu_negative_control():
    """The comparison above can fail: without the ReLU the result differs."""
    x, w, pw = _normal((2, 8, 8, C), 7), _normal((3, 3, 1, C), 8), _normal((C, 5), 9)
    no_relu = jnp.einsum("nhwc,cm->nhwm", _xla(x, w, 1, 1, 1), pw)
    assert float(jnp.max(jnp.abs(native.sep(x, w, pw, 1, 1, 1) - no_relu))) > 1.0


def test_vmap_broadcasts_unbatched_operands():
    """vmap with one operand batched and the other shared (broadcast in the kernel), and
    nested vmaps (two leading axes), equal the per-example loop."""
    xs, ws, pw = _normal((3, 2, 7, 9, C), 10), _normal((3, 3, 3, 1, C), 11), _normal((C, 6), 12)
    g = jax.grad(lambda x, w: jnp.sum(jnp.sin(native.sep(x, w, pw, 2, 1, 1))), (0, 1))
    for bx, bw in [(True, False), (False, True), (True, True)]:
        x, w = (xs if bx else xs[0]), (ws if bw else ws[0])
        got = jax.jit(jax.vmap(g, (0 if bx else None, 0 if bw else None)))(x, w)
        per = [g(x[i] if bx else x, w[i] if bw else w) for i in range(3)]
        _close(got, jax.tree.map(lambda *a: jnp.stack(a), *per))
    conv = lambda x, w: native.forward(x, w, 1, 1, 1)
    got = jax.jit(jax.vmap(jax.vmap(conv, (0, None)), (None, 0)))(xs, ws)
    assert got.shape == (3, 3, 2, 7, 9, C)
    _close(got[1, 2], _loop_reference(xs[2], ws[1], 1, 1, 1))


def test_shapes_are_checked_in_the_kernel():
    x, w = _normal((2, 8, 8, C), 13), _normal((3, 3, 1, C), 14)
    ct = native.forward(x, w, 1, 1, 1)
    with pytest.raises(jax.errors.JaxRuntimeError, match="output size disagrees"):
        jax.block_until_ready(native.input_grad(ct, w, (2, 9, 8, C), 1, 1, 1))


def test_flops_count_the_custom_calls():
    n, h, c, m, k = 2, 8, 16, 24, 3
    x, w, pw = _normal((n, h, h, c), 15), _normal((k, k, 1, c), 16), _normal((c, m), 17)
    fwd = jax.make_jaxpr(lambda x, w, pw: native.sep(x, w, pw, 1, 1, 1))(x, w, pw)
    pixels = n * h * h
    assert native.flops(fwd) == 2 * pixels * (k * k * c + c * m)
    grad = jax.make_jaxpr(jax.grad(lambda *a: jnp.sum(native.sep(*a, 1, 1, 1)), (0, 1, 2)))
    both = native.flops(grad(x, w, pw))
    assert both == 2 * pixels * (k * k * c + c * m) + 2 * pixels * (3 * k * k * c + 2 * c * m)
    vm = jax.make_jaxpr(jax.vmap(lambda x: native.sep(x, w, pw, 1, 1, 1)))(jnp.stack([x] * 3))
    assert native.flops(vm) == 3 * native.flops(fwd)


@pytest.mark.parametrize("op", ["sep_conv_3x3", "sep_conv_5x5", "dil_conv_5x5"])
def test_fused_ops_keep_the_parameter_tree(op, monkeypatch):
    """SepConv/DilConv through the fused call have the same parameters (names, shapes,
    init values) as through the separate modules, and agree in outputs and gradients."""
    x = _normal((2, 8, 8, 16), 18)
    results = {}
    for impl in ("native", "shift_vjp"):
        monkeypatch.setenv(settings.ENV_VARS["depthwise"], impl)
        mod = ops.make_op(op, 16, 2, True)
        variables = mod.init(jax.random.key(0), x, train=True)

        def loss(params, variables=variables, mod=mod):
            y, _ = mod.apply({**variables, "params": params}, x, train=True,
                             mutable=["batch_stats"])  # fmt: skip
            return jnp.sum(jnp.sin(y))

        jaxpr = str(jax.make_jaxpr(loss)(variables["params"]))
        assert ("nas_jax_sep_forward" in jaxpr) == (impl == "native")
        results[impl] = (variables, loss(variables["params"]),
                         jax.grad(loss)(variables["params"]))  # fmt: skip
    (v_n, l_n, g_n), (v_s, l_s, g_s) = results["native"], results["shift_vjp"]
    flat = lambda t: flax.traverse_util.flatten_dict(t, sep="/")
    assert flat(v_n).keys() == flat(v_s).keys()
    for key, value in flat(v_n).items():
        np.testing.assert_array_equal(value, flat(v_s)[key], err_msg=key)
    _close(l_n, l_s, tol=1e-5)
    _close(g_n, g_s, tol=1e-4)


def _run(code: str, **env) -> dict:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", **env}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]) | {"stderr": proc.stderr}


_PROBE = """
import json, jax, jax.numpy as jnp, numpy as np
from nas_jax.kernels import depthwise_conv, native, native_active
x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 7, 7, 5)), jnp.float32)
w = jnp.asarray(np.random.default_rng(1).standard_normal((3, 3, 1, 5)), jnp.float32)
loss = lambda w, impl: jnp.sum(jnp.sin(depthwise_conv(x, w, padding=1, impl=impl)))
err = float(jnp.max(jnp.abs(jax.grad(loss)(w, None) - jax.grad(loss)(w, "xla"))))
active = native_active(jnp.float32)
print(json.dumps({"available": native.available(), "active": active, "err": err}))
"""


def test_without_a_compiler_falls_back_to_pure_jax(tmp_path):
    out = _run(_PROBE, CXX=str(tmp_path / "no-such-compiler"), NAS_JAX_NATIVE_CACHE=str(tmp_path))
    assert not out["available"] and not out["active"]
    assert "no C++ compiler" in out["stderr"]
    assert out["err"] < 1e-4  # the default still computes the conv (via 'shift_vjp')
    assert not list(tmp_path.iterdir())


def test_disabled_by_env_var(tmp_path):
    out = _run(_PROBE, NAS_JAX_NATIVE="0", NAS_JAX_NATIVE_CACHE=str(tmp_path))
    assert not out["available"] and out["err"] < 1e-4


def test_build_is_cached_and_atomic(tmp_path):
    out = _run(_PROBE, NAS_JAX_NATIVE_CACHE=str(tmp_path))
    assert out["available"] and out["active"] and out["err"] < 1e-4
    (lib,) = tmp_path.iterdir()  # the library, no temporary left behind
    assert lib.name.startswith("depthwise-") and lib.suffix == ".so"
    mtime = lib.stat().st_mtime_ns
    assert _run(_PROBE, NAS_JAX_NATIVE_CACHE=str(tmp_path))["available"]
    assert lib.stat().st_mtime_ns == mtime  # loaded, not rebuilt


def test_a_failing_build_is_reported_and_falls_back(tmp_path):
    cxx = tmp_path / "bad-cxx"
    cxx.write_text("#!/bin/sh\n[ \"$1\" = --version ] && echo bad 1.0 && exit 0\n"
                   "echo 'error: broken toolchain' >&2; exit 1\n")  # fmt: skip
    cxx.chmod(0o755)
    out = _run(_PROBE, CXX=str(cxx), NAS_JAX_NATIVE_CACHE=str(tmp_path / "cache"))
    assert not out["available"] and out["err"] < 1e-4
    assert "broken toolchain" in out["stderr"]
    assert not list((tmp_path / "cache").iterdir())  # nothing half-written
