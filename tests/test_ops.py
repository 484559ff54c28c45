"""Primitive ops and evaluation networks behave as the reference's (SPEC 3, 4)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nas_jax import genotype, networks, ops
from nas_jax.init import init_variables


def run(module, x, train=True, rngs=None):
    variables = init_variables(module, jax.random.key(0), x, train)
    out, _ = module.apply(variables, x, train, mutable=["batch_stats"], rngs=rngs)
    return out, variables


def test_avg_pool_excludes_padding_from_divisor():
    x = jnp.arange(16.0).reshape(1, 4, 4, 1)
    y, _ = run(ops.Pool("avg", 1), x)
    assert float(y[0, 0, 0, 0]) == pytest.approx((0 + 1 + 4 + 5) / 4)  # not /9
    assert float(y[0, 1, 1, 0]) == pytest.approx(np.mean([0, 1, 2, 4, 5, 6, 8, 9, 10]))


def test_max_pool_pads_with_minus_infinity():
    x = -1.0 - jnp.arange(16.0).reshape(1, 4, 4, 1)
    y, _ = run(ops.Pool("max", 2), x)
    assert y.shape == (1, 2, 2, 1)
    assert float(y[0, 0, 0, 0]) == -1.0  # a zero pad would give 0


def test_zero_and_noise_respect_stride():
    x = jnp.ones((2, 8, 8, 3))
    z, _ = run(ops.Zero(2), x)
    assert z.shape == (2, 4, 4, 3) and float(jnp.abs(z).max()) == 0.0
    n1, _ = run(ops.Noise(2), x, rngs={"noise": jax.random.key(1)})
    n2, _ = run(ops.Noise(2), x, rngs={"noise": jax.random.key(2)})
    assert n1.shape == (2, 4, 4, 3) and not np.allclose(n1, n2)
    assert 0.5 < float(jnp.std(n1)) < 1.5


def test_factorized_reduce_matches_two_shifted_convs():
    x = jax.random.normal(jax.random.key(0), (2, 6, 6, 4))
    fr = ops.FactorizedReduce(6, affine=False)
    y, v = run(fr, x, train=False)  # running stats (0, 1): BN is the identity up to eps
    k0, k1 = (v["params"][f"Conv_{i}"]["kernel"] for i in (0, 1))
    r = jax.nn.relu(x)
    a = jnp.einsum("bhwc,cd->bhwd", r[:, ::2, ::2], k0[0, 0])
    b = jnp.einsum("bhwc,cd->bhwd", r[:, 1::2, 1::2], k1[0, 0])
    want = jnp.concatenate([a, b], -1) / np.sqrt(1 + 1e-5)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)
    # Negative control: without the one-pixel shift the second half differs.
    b_unshifted = jnp.einsum("bhwc,cd->bhwd", r[:, ::2, ::2], k1[0, 0]) / np.sqrt(1 + 1e-5)
    assert not np.allclose(y[..., 3:], b_unshifted, atol=1e-3)


@pytest.mark.parametrize(
    "name,expected",
    [
        ("sep_conv_3x3", 2 * (9 * 8 + 64)),
        ("sep_conv_5x5", 2 * (25 * 8 + 64)),
        ("dil_conv_3x3", 9 * 8 + 64),
        ("dil_conv_5x5", 25 * 8 + 64),
        ("nor_conv_3x3", 9 * 64),
        ("skip_connect", 0),
        ("max_pool_3x3", 0),
    ],
)
def test_op_parameter_formulas(name, expected):
    """SPEC 3.1 formulas, C=8, non-affine (search) BN."""
    x = jnp.zeros((1, 8, 8, 8))
    _, v = run(ops.make_op(name, 8, 1, False), x)
    assert networks.count_params(v.get("params", {})) == expected
    _, v2 = run(ops.make_op(name, 8, 2, False), x)
    extra = 64 if name == "skip_connect" else 0  # stride 2 skip = FactorizedReduce
    assert networks.count_params(v2.get("params", {})) == expected + extra


def test_stride_two_shapes_agree():
    x = jnp.zeros((1, 8, 8, 4))
    shapes = {name: run(ops.make_op(name, 4, 2, False), x)[0].shape for name in ops.OPS if
              name not in ("noise", "conv_7x1_1x7")}  # fmt: skip
    assert set(shapes.values()) == {(1, 4, 4, 4)}


def test_unknown_op():
    with pytest.raises(ValueError, match="accepted: none, noise"):
        ops.make_op("sep_conv_9x9", 4, 1, True)


def test_drop_path_scales_and_masks_per_sample():
    x = jnp.ones((400, 2, 2, 1))
    y = ops.drop_path(jax.random.key(0), x, 0.25)
    per_sample = np.asarray(y[:, 0, 0, 0])
    assert np.all(np.isclose(per_sample, 0.0) | np.isclose(per_sample, 1 / 0.75))
    assert np.all(np.asarray(y) == per_sample[:, None, None, None])
    assert 0.15 < np.mean(per_sample == 0) < 0.35


def _cell_out(pairs, drop):
    cell = networks.EvalCell(pairs, (2, 3, 4, 5), 4, False, False)
    x = jax.random.normal(jax.random.key(0), (8, 4, 4, 4))
    v = init_variables(cell, jax.random.key(1), x, x, True)
    out, _ = cell.apply(v, x, x, True, drop, mutable=["batch_stats"],
                        rngs={"dropout": jax.random.key(3)})  # fmt: skip
    return out


def test_drop_path_skips_identity_only():
    skips = tuple(("skip_connect", j) for j in (0, 1) * 4)
    np.testing.assert_array_equal(_cell_out(skips, 0.5), _cell_out(skips, None))
    pools = tuple(("max_pool_3x3", j) for j in (0, 1) * 4)
    assert not np.allclose(_cell_out(pools, 0.5), _cell_out(pools, None))  # negative control


def test_eval_network_aux_only_in_training():
    g = genotype.registry()["DARTS_V2"]
    net = networks.build_eval_network(g, C=4, layers=3, num_classes=7)
    x = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
    v = init_variables(net, jax.random.key(0), x, train=True)
    (logits, aux), _ = net.apply(v, x, train=True, mutable=["batch_stats"])
    assert logits.shape == (2, 7) and aux.shape == (2, 7)
    logits_eval, aux_eval = net.apply(v, x, train=False)
    assert aux_eval is None and logits_eval.shape == (2, 7)


def test_nb201_network_runs_with_none_edges():
    g = genotype.parse_text(
        "|none~0|+|skip_connect~0|none~1|+|nor_conv_3x3~0|none~1|avg_pool_3x3~2|"
    )
    net = networks.NB201Network(g, C=4, N=1, num_classes=3)
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
    v = init_variables(net, jax.random.key(0), x, train=True)
    logits, aux = net.apply(v, x, train=False)
    assert logits.shape == (2, 3) and aux is None
