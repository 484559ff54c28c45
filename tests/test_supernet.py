"""Functional supernets: masking equals removal, decided rows block alpha gradients,
vmap over weight variants equals a loop. Each check has a negative control."""

import functools

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nas_jax import arch, spaces, supernet
from nas_jax.init import init_variables

RNGS = {"params": jax.random.key(0), "noise": jax.random.key(1)}


def darts_space(ops):
    e = spaces._DARTS_EDGES
    return spaces.SearchSpace(
        "test", "darts", ("normal", "reduce"), e, spaces._uniform(("normal", "reduce"), e, ops)
    )


def tiny_darts(ops=("max_pool_3x3", "skip_connect", "sep_conv_3x3", "dil_conv_3x3")):
    return supernet.DartsSupernet(darts_space(ops), C=4, layers=3, num_classes=5)


def tiny_nb201():
    return supernet.NB201Supernet(spaces.get_space("nb201"), C=4, N=1, num_classes=5)


def images(n=4, size=8, seed=0):
    return jax.random.normal(jax.random.key(seed), (n, size, size, 3))


def random_weights(key, space):
    keys = jax.random.split(key, len(space.cell_types))
    return {
        t: jax.random.uniform(k, (space.num_edges, space.num_ops), minval=0.1)
        for t, k in zip(space.cell_types, keys)
    }


def apply(model, variables, x, w, train=True):
    """Jitted forward; arrays are arguments (closed-over arrays would be constant-folded)."""
    return _apply(model, variables, x, w, train)


@functools.partial(jax.jit, static_argnums=(0, 4))
def _apply(model, variables, x, w, train):
    return model.apply(variables, x, w, train=train, mutable=["batch_stats"], rngs=RNGS)


def init(model, x, w):
    return init_variables(model, jax.random.key(0), x, w, train=True)


def drop_op(tree, op_name):
    """The variable tree of a network built without `op_name`."""
    flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(tree))
    keep = {k: v for k, v in flat.items() if not any(p in (op_name, f"{op_name}_bn") for p in k)}
    assert len(keep) < len(flat)
    return flax.traverse_util.unflatten_dict(keep)


@pytest.mark.parametrize("train", [True, False])
def test_masked_op_equals_network_without_it(train):
    full_ops = ("max_pool_3x3", "skip_connect", "sep_conv_3x3", "dil_conv_3x3")
    without = ("max_pool_3x3", "skip_connect", "dil_conv_3x3")
    full, small = tiny_darts(full_ops), tiny_darts(without)
    x = images()
    w = random_weights(jax.random.key(3), full.space)
    variables = init(full, x, w)
    # Give the BN running statistics non-trivial values first.
    _, state = apply(full, variables, x + 1.0, w)
    variables = {**variables, **state}
    small_vars = drop_op(variables, "sep_conv_3x3")
    assert jax.tree.structure(small_vars) == jax.tree.structure(
        jax.eval_shape(
            lambda: small.init(RNGS, x, {t: v[:, [0, 1, 3]] for t, v in w.items()}, train=True)
        )
    )

    def compare(sep_weight):
        w_full = {t: v.at[:, 2].set(sep_weight) for t, v in w.items()}
        w_small = {t: v[:, [0, 1, 3]] for t, v in w.items()}
        y_full, _ = apply(full, variables, x, w_full, train)
        y_small, _ = apply(small, small_vars, x, w_small, train)
        return float(jnp.max(jnp.abs(y_full - y_small))), float(jnp.max(jnp.abs(y_small)))

    diff, scale = compare(0.0)
    assert diff < 1e-5 * max(scale, 1.0)
    diff_control, _ = compare(0.05)  # negative control: the op still contributes
    assert diff_control > 1e-3


def test_decided_rows_pass_zero_gradient_to_alpha():
    model = tiny_darts(("max_pool_3x3", "skip_connect", "avg_pool_3x3"))
    space = model.space
    state = arch.init_arch_state(jax.random.key(0), space, scale=1.0)
    state = arch.decide_op(state, "normal", 3, 1)
    for e in (5, 6, 7, 8):
        state = arch.decide_op(state, "normal", e, 2)
    state = arch.prune_node(state, space, "normal", 4, keep=(6, 7))
    x = images()
    variables = init(model, x, arch.mixing_weights(state))
    target = jax.random.normal(jax.random.key(9), (x.shape[0], 5))

    @jax.jit
    def grad(alphas, variables, x, target):
        def loss(alphas):
            w = arch.weights_from_alphas(alphas, state.decided_op, state.edge_kept)
            logits, _ = model.apply(variables, x, w, train=True, mutable=["batch_stats"])
            return jnp.sum(logits * target)

        return jax.grad(loss)(alphas)

    g = grad(state.alphas, variables, x, target)
    row_norm = np.linalg.norm(np.asarray(g["normal"]), axis=1)
    decided = [3, 5, 6, 7, 8]
    assert np.all(row_norm[decided] == 0.0)
    # Negative control: undecided rows (and the other cell type) do get gradient.
    undecided = [e for e in range(14) if e not in decided]
    assert np.all(row_norm[undecided] > 1e-7)
    assert np.all(np.linalg.norm(np.asarray(g["reduce"]), axis=1) > 1e-7)


def test_mixing_weights_rows():
    space = spaces.get_space("s5")
    state = arch.init_arch_state(jax.random.key(0), space)
    state = arch.decide_op(state, "reduce", 0, 4)
    for e in (2, 3, 4):
        state = arch.decide_op(state, "reduce", e, 0)
    state = arch.prune_node(state, space, "reduce", 3, keep=(2, 4))
    w = arch.mixing_weights(state)
    np.testing.assert_allclose(w["reduce"][0], np.eye(7)[4])
    np.testing.assert_allclose(w["reduce"][3], np.zeros(7))
    np.testing.assert_allclose(w["reduce"][2], np.eye(7)[0])
    np.testing.assert_allclose(np.sum(w["normal"], axis=1), np.ones(14), rtol=1e-6)
    undecided = np.flatnonzero(np.asarray(state.decided_op["reduce"]) < 0).tolist()
    assert undecided == [1] + list(range(5, 14))
    assert arch.undecided_nodes(state, space, "reduce") == [4, 5]
    with pytest.raises(ValueError, match="two distinct input edges"):
        arch.prune_node(state, space, "normal", 4, keep=(5, 9))


def test_remove_op_and_edge_do_not_renormalise():
    w = {"normal": jnp.full((14, 7), 1 / 7), "reduce": jnp.full((14, 7), 1 / 7)}
    r = arch.remove_op(w, "normal", 2, 5)
    assert float(r["normal"][2, 5]) == 0.0
    assert float(jnp.sum(r["normal"][2])) == pytest.approx(6 / 7)
    assert float(jnp.sum(jnp.abs(r["normal"] - w["normal"]))) == pytest.approx(1 / 7)
    np.testing.assert_array_equal(r["reduce"], w["reduce"])
    e = arch.remove_edge(w, "reduce", 13)
    assert float(jnp.sum(e["reduce"][13])) == 0.0 and float(jnp.sum(e["reduce"])) == pytest.approx(
        13
    )


@pytest.mark.parametrize("family", ["darts", "nb201"])
def test_vmap_over_mask_variants_equals_loop(family):
    model = tiny_darts() if family == "darts" else tiny_nb201()
    space = model.space
    cell_type = space.cell_types[-1]
    x = images()
    w = random_weights(jax.random.key(5), space)
    variables = init(model, x, w)
    edge = 4

    def score(w):
        logits, _ = apply(model, variables, x, w)
        return logits

    def score_all(variants):
        return jax.jit(jax.vmap(score))(variants)

    variants = arch.op_removal_variants(w, cell_type, jnp.int32(edge))
    batched = score_all(variants)
    looped = jnp.stack([score(arch.remove_op(w, cell_type, edge, k)) for k in range(space.num_ops)])
    np.testing.assert_allclose(batched, looped, rtol=1e-4, atol=1e-4)
    # Negative control: the variants really differ, so a mis-ordered loop is caught.
    assert not np.allclose(batched, looped[::-1], atol=1e-3)

    edges = jnp.array([2, 3, 4])
    batched_e = score_all(arch.edge_removal_variants(w, cell_type, edges))
    looped_e = jnp.stack([score(arch.remove_edge(w, cell_type, e)) for e in (2, 3, 4)])
    np.testing.assert_allclose(batched_e, looped_e, rtol=1e-4, atol=1e-4)
    assert not np.allclose(batched_e, looped_e[::-1], atol=1e-3)


def test_batch_stats_write_back_is_the_callers_choice():
    model = tiny_nb201()
    x = images()
    w = random_weights(jax.random.key(1), model.space)
    variables = init(model, x, w)
    _, new_state = apply(model, variables, x, w, train=True)
    changed = jax.tree.map(
        lambda a, b: bool(jnp.any(a != b)), variables["batch_stats"], new_state["batch_stats"]
    )
    assert all(jax.tree.leaves(changed))
    # PyTorch momentum 0.1: running = 0.9 * running + 0.1 * batch (the stem BN sees the stem conv).
    stem_out = jax.lax.conv_general_dilated(
        x,
        variables["params"]["stem_conv"]["kernel"],
        (1, 1),
        ((1, 1), (1, 1)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    np.testing.assert_allclose(
        new_state["batch_stats"]["stem_bn"]["mean"],
        0.1 * jnp.mean(stem_out, axis=(0, 1, 2)),
        rtol=1e-4,
        atol=1e-6,
    )
    y_eval, eval_state = apply(model, variables, x, w, train=False)
    same = jax.tree.map(
        lambda a, b: bool(jnp.all(a == b)), variables["batch_stats"], eval_state["batch_stats"]
    )
    assert all(jax.tree.leaves(same))
    assert y_eval.shape == (4, 5)


def test_noise_op_draws_from_the_noise_stream():
    model = supernet.DartsSupernet(spaces.get_space("s4"), C=4, layers=3, num_classes=5)
    x = images()
    w = random_weights(jax.random.key(2), model.space)
    variables = init(model, x, w)

    @jax.jit
    def run_with(variables, x, w, key):
        return model.apply(variables, x, w, train=False, rngs={"noise": key})

    def run(seed):
        return run_with(variables, x, w, jax.random.key(seed))

    np.testing.assert_array_equal(run(7), run(7))
    assert not np.allclose(run(7), run(8))
