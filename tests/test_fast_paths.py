"""CPU fast paths equal the plain formulations they replace: the pointwise conv as a
matmul, the sliced average pool, the fusion barrier, the allocator settings. Each
equivalence has a negative control."""

import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nas_jax import kernels, ops
from nas_jax.kernels import allocator, fusion, pooling, settings


def _normal(shape, seed):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("hw", [(8, 8), (7, 9)])
def test_pointwise_conv_equals_flax_conv_values_and_gradients(stride, hw):
    x = _normal((2, *hw, 3), 0)
    ours = ops.conv(5, 1, stride)
    variables = ours.init(jax.random.key(1), x)
    ref = nn.Conv(5, (1, 1), (stride, stride), ((0, 0), (0, 0)), use_bias=False)
    assert jax.tree.structure(variables) == jax.tree.structure(ref.init(jax.random.key(1), x))

    def loss(module):
        return lambda v, x: jnp.sum(jnp.sin(module.apply(v, x)))

    y, y_ref = ours.apply(variables, x), ref.apply(variables, x)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-6)
    g, g_ref = (jax.grad(loss(m), argnums=(0, 1))(variables, x) for m in (ours, ref))
    for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g_ref)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    # Negative control: another kernel gives another output.
    other = jax.tree.map(lambda k: k + 0.1, variables)
    assert not np.allclose(ours.apply(other, x), y_ref, atol=1e-3)


def test_pointwise_conv_keeps_flax_names_inside_ops():
    x = _normal((1, 4, 4, 3), 0)
    tree = ops.ReLUConvBN(4, 1).init(jax.random.key(0), x, True)["params"]
    assert set(tree) == {"Conv_0", "BatchNorm_0"}
    assert tree["Conv_0"]["kernel"].shape == (1, 1, 3, 4)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("hw", [(8, 8), (7, 9), (1, 1), (2, 3)])
def test_sliced_avg_pool_equals_reduce_window(stride, hw):
    x = _normal((2, *hw, 3), 2)
    ref = lambda x: nn.avg_pool(x, (3, 3), (stride, stride), ((1, 1), (1, 1)),
                                count_include_pad=False)  # fmt: skip
    ours = lambda x: pooling.avg_pool_3x3(x, stride)
    np.testing.assert_allclose(ours(x), ref(x), rtol=1e-6, atol=1e-6)
    ct = _normal(ref(x).shape, 3)
    g = jax.vjp(ours, x)[1](ct)[0]
    g_ref = jax.vjp(ref, x)[1](ct)[0]
    np.testing.assert_allclose(g, g_ref, rtol=1e-5, atol=1e-6)
    if min(hw) > 1:  # negative control: counting the padding changes the borders
        incl = nn.avg_pool(x, (3, 3), (stride, stride), ((1, 1), (1, 1)), count_include_pad=True)
        assert not np.allclose(ours(x), incl, atol=1e-4)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("hw", [(8, 8), (7, 9), (1, 1), (2, 3)])
def test_sliced_max_pool_equals_reduce_window_with_first_max_gradient(stride, hw):
    x = _normal((2, *hw, 3), 6)
    x = x.at[:, ::2, :, 0].set(0.25)  # ties: the gradient goes to the first maximal tap
    x = x.at[0, 0, : min(2, hw[1]), 1].set(9.0)  # a tie that is surely the window's max
    ref = lambda x: nn.max_pool(x, (3, 3), (stride, stride), ((1, 1), (1, 1)))
    ours = lambda x: pooling.max_pool_3x3(x, stride)
    np.testing.assert_array_equal(jax.jit(ours)(x), ref(x))
    ct = _normal(ref(x).shape, 7)
    g = jax.jit(lambda x, ct: jax.vjp(ours, x)[1](ct)[0])(x, ct)
    np.testing.assert_allclose(g, jax.vjp(ref, x)[1](ct)[0], rtol=1e-6, atol=1e-6)
    if hw[1] > 1:  # negative control: autodiff of maximum splits the tied gradient
        split = jax.vjp(lambda x: pooling._max_pool(x, stride), x)[1](ct)[0]
        assert not np.allclose(split, g, atol=1e-4)


def _f(x):
    return jnp.sum(jnp.sin(fusion.materialize(jnp.cos(x) * 2.0)) ** 2)


def test_materialize_is_the_identity_for_values_gradients_and_vmap():
    x = _normal((3, 4, 4, 2), 4)
    x = x.at[0, 0, 0, 0].set(jnp.nan)  # any bit pattern, NaN included, takes the identity
    plain = lambda x: jnp.sum(jnp.sin(jnp.cos(x) * 2.0) ** 2)
    y = fusion.materialize(x)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(x))
    np.testing.assert_array_equal(jnp.nan_to_num(y), jnp.nan_to_num(x))
    x = x.at[0, 0, 0, 0].set(0.5)
    np.testing.assert_allclose(jax.jit(jax.grad(_f))(x), jax.grad(plain)(x), rtol=1e-6)
    np.testing.assert_allclose(jax.vmap(jax.grad(_f))(x), jax.vmap(jax.grad(plain))(x), rtol=1e-6)
    gg = lambda f: jax.grad(lambda x: jnp.sum(jnp.cos(jax.grad(f)(x))))  # darts_2nd needs it
    np.testing.assert_allclose(jax.jit(gg(_f))(x), gg(plain)(x), rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError, match="forward-mode"):  # documented: a custom_vjp
        jax.jvp(_f, (x,), (jnp.ones_like(x),))
    jax.jvp(lambda x: jnp.sum(fusion.materialize(x, impl="none")), (x,), (x,))  # the way out
    # Negative control: the branch the predicate never takes really differs.
    np.testing.assert_array_equal(jax.lax.cond(False, lambda a: a, lambda a: -a, x), -x)


def test_materialize_is_a_conditional_in_the_cpu_program_unless_disabled(monkeypatch):
    x = _normal((2, 4, 4, 2), 5)
    hlo = jax.jit(jax.grad(_f)).lower(x).compile().as_text()
    assert settings.default("materialize", "cpu") == "cond" and "conditional(" in hlo
    monkeypatch.setenv("NAS_JAX_MATERIALIZE", "none")
    hlo = jax.jit(jax.grad(lambda x: _f(x) + 0.0)).lower(x).compile().as_text()
    assert "conditional(" not in hlo
    monkeypatch.setenv("NAS_JAX_MATERIALIZE", "barrier")
    with pytest.raises(ValueError, match="'barrier'.*accepted: auto, cond, none"):
        fusion.materialize(x)


def test_configure_allocator(monkeypatch):
    monkeypatch.setattr(allocator, "_done", False)
    monkeypatch.setenv("NAS_JAX_MALLOC", "default")
    assert kernels.configure_allocator() is False and not allocator.applied()
    monkeypatch.setenv("NAS_JAX_MALLOC", "tcmalloc")
    with pytest.raises(ValueError, match="'tcmalloc'.*accepted: auto, reuse, default"):
        kernels.configure_allocator()
    monkeypatch.setenv("NAS_JAX_MALLOC", "reuse")
    assert kernels.configure_allocator() is True  # glibc Linux: this project's machines
    big = np.ones(64 * 2**20 // 8)  # a block above glibc's mmap threshold still works
    assert big.sum() == big.size


_REALLOC_FAULTS = """
import resource, numpy as np
from nas_jax import kernels
kernels.configure_allocator()
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
a = np.ones(64 * 2**20 // 8); del a
f0 = faults(); a = np.ones(64 * 2**20 // 8); del a
print(faults() - f0)
"""


def test_configured_allocator_reuses_a_freed_large_block_without_page_faults():
    def faults(mode):
        env = {**os.environ, "NAS_JAX_MALLOC": mode}
        out = subprocess.run([sys.executable, "-c", _REALLOC_FAULTS], env=env,
                             capture_output=True, text=True, check=True)  # fmt: skip
        return int(out.stdout.split()[-1])

    reused = faults("reuse")
    assert reused <= 10, reused  # measured 0
    # Negative control: glibc's default mmaps the block afresh (measured 544 faults with
    # numpy's huge pages; 16,384 without).
    assert faults("default") > 10 * max(reused, 1)


@pytest.mark.parametrize("pool", [pooling.avg_pool_3x3, pooling.max_pool_3x3])
def test_pools_keep_the_compute_dtype(pool):
    x = _normal((2, 6, 6, 3), 8).astype(jnp.bfloat16)
    assert pool(x, 1).dtype == jnp.bfloat16 and pool(x, 2).dtype == jnp.bfloat16
    y32 = pool(x.astype(jnp.float32), 1)
    np.testing.assert_allclose(pool(x, 1).astype(jnp.float32), y32, rtol=1e-2, atol=1e-2)
