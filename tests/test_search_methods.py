"""Search methods: one step shape for all, second-order gradients, SDARTS perturbations.

Most checks use a toy supernet (dense layers mixed by the same weight dict, with BN)
because XLA:CPU needs tens of seconds per supernet gradient; the step code is
model-agnostic. The real supernets run `darts` by default and every method under
`-m slow`. Test jits skip LLVM optimisation: 2-3x faster compiles, tiny run times.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nas_jax import arch, ops, spaces, supernet
from nas_jax.search import arch_grads, methods, optim, perturb

OPS = ("max_pool_3x3", "skip_connect", "sep_conv_3x3")
# A DARTS cell with 7 of the 14 edges (state 3 keeps three inputs, so it is prunable):
# the same supernet code at a third of the compile time.
EDGES = ((2, 0), (2, 1), (3, 0), (3, 1), (3, 2), (4, 3), (5, 4))


# Per-jit XLA option: compile time dominates these tests, run time is negligible.
jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


def small_space(ops=OPS, edges=EDGES):
    types = spaces.DARTS_CELL_TYPES
    return spaces.SearchSpace("test", "darts", types, edges, spaces._uniform(types, edges, ops))


class ToySupernet(nn.Module):
    """Same call signature as the supernets: residual dense layers mixed per edge."""

    space: spaces.SearchSpace
    width: int = 6
    num_classes: int = 5

    @nn.compact
    def __call__(self, x_BxHxWxC, weights, *, train):
        acts = (nn.relu, jnp.tanh, nn.sigmoid)
        h = nn.Dense(self.width)(x_BxHxWxC.reshape(x_BxHxWxC.shape[0], -1))
        h = ops.batch_norm(True)(h, use_running_average=not train)
        for t in self.space.cell_types:
            for e in range(self.space.num_edges):
                w_K, z = weights[t][e], nn.Dense(self.width)(h)
                h = h + sum(w_K[k] * act(z) for k, act in enumerate(acts))
            h = ops.batch_norm(False)(h, use_running_average=not train)
        return nn.Dense(self.num_classes)(h)


def batch(seed, n=8, size=4, num_classes=5):
    kx, ky = jax.random.split(jax.random.key(seed))
    x = jax.random.normal(kx, (n, size, size, 3))
    return x, jax.random.randint(ky, (n,), 0, num_classes)


def txs(lr=0.1):
    return optim.weight_optimizer(lr), optim.arch_optimizer(lr=0.01)


@functools.cache
def new_state(model, seed=0, size=4, alpha_scale=None):
    """Cached: steps are jitted without donation (except where a test makes its own)."""
    weight_tx, arch_tx = txs()
    x = batch(0, size=size)[0]
    state = methods.create_search_state(
        model, jax.random.key(seed), x, model.space, weight_tx, arch_tx
    )
    if alpha_scale is not None:  # alphas far from uniform
        a = arch.init_arch_state(jax.random.key(seed + 1), model.space, scale=alpha_scale)
        state = state._replace(arch=a, arch_opt_state=arch_tx.init(a.alphas))
    return state


@functools.cache
def jitted_step(model, method, **options):
    weight_tx, arch_tx = txs()
    if method.startswith("darts_2nd"):
        options.setdefault("weight_lr", 0.1)
    step = methods.make_search_step(model, method, weight_tx=weight_tx, arch_tx=arch_tx, **options)
    return jit(step)


def run_steps(model, method, state, n=2, seed=0, size=4, epsilon=0.3, **options):
    step = jitted_step(model, method, **options)
    history = []
    for i in range(n):
        key = jax.random.fold_in(jax.random.key(seed), i)
        tb, vb = batch(10 + i, size=size), batch(20 + i, size=size)
        state, metrics = step(state, tb, vb, key, jnp.float32(epsilon))
        history.append(metrics)
    return state, history


def changed(a, b):
    return any(bool(jnp.any(x != y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


TOY = ToySupernet(small_space())


def check_two_steps(model, method, size, **options):
    state0 = new_state(model, size=size)
    snapshot = jax.tree.map(np.array, state0)  # the step donates nothing here; keep a copy
    state, history = run_steps(model, method, state0, size=size, **options)
    assert int(state.step) == 2
    for metrics in history:
        assert all(np.isfinite(np.asarray(v)) for v in metrics.values()), metrics
    assert changed(state.params, snapshot.params)
    assert changed(state.batch_stats, snapshot.batch_stats)
    return state, snapshot, history


@pytest.mark.parametrize("method", sorted(methods.METHODS))
def test_every_method_takes_two_steps_on_toy(method):
    state, before, history = check_two_steps(TOY, method, size=4)
    if method == "fixed_alpha":
        assert not changed(state.arch, before.arch)
        assert not changed(state.arch_opt_state, before.arch_opt_state)
        assert "valid_loss" not in history[0]
    else:
        assert changed(state.arch.alphas, before.arch.alphas)
        assert {"valid_loss", "valid_acc", "arch_grad_norm"} <= set(history[0])


def test_donated_jit_step_runs():
    weight_tx, arch_tx = txs()
    step = methods.make_search_step(TOY, "darts", weight_tx=weight_tx, arch_tx=arch_tx)
    step = jit(step, donate_argnums=0)
    state = new_state.__wrapped__(TOY)  # not the cached one: its buffers get donated
    for i in range(2):
        state, _ = step(state, batch(1), batch(2), jax.random.key(i), jnp.float32(0.0))
    assert int(state.step) == 2


def test_unknown_method_and_misplaced_options():
    weight_tx, arch_tx = txs()
    make = functools.partial(methods.make_search_step, TOY, weight_tx=weight_tx, arch_tx=arch_tx)
    accepted = "accepted: darts, darts_2nd, darts_2nd_fd, sdarts_rs, sdarts_adv, fixed_alpha"
    with pytest.raises(ValueError, match=accepted):
        make("gdas")
    with pytest.raises(ValueError, match="weight_lr"):
        make("darts_2nd")
    with pytest.raises(ValueError, match="uniform"):
        make("darts", uniform=True)
    with pytest.raises(ValueError, match="noise"):
        make("sdarts_adv", noise="gaussian")
    with pytest.raises(ValueError, match="accepted: uniform, gaussian"):
        make("sdarts_rs", noise="laplace")


def test_step_order_and_batch_stats_write_back():
    """Alpha step on the valid batch first, then the weight step with the new alphas;
    running statistics are updated by the valid forward, then by the train forward."""
    state0 = new_state(TOY, alpha_scale=1.0)
    tb, vb, key = batch(1), batch(2), jax.random.key(3)
    state, metrics = jitted_step(TOY, "darts")(state0, tb, vb, key, jnp.float32(0.0))
    forward = methods.make_forward(TOY)
    k_arch, _, k_weight = jax.random.split(key, 3)
    w_old = arch.mixing_weights(state0.arch)
    v_loss, (_, bs) = forward(state0.params, state0.batch_stats, w_old, vb, k_arch, True)
    t_loss, (_, bs) = forward(
        state0.params, bs, arch.mixing_weights(state.arch), tb, k_weight, True
    )
    np.testing.assert_allclose(metrics["valid_loss"], v_loss, rtol=1e-5)
    np.testing.assert_allclose(metrics["train_loss"], t_loss, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(state.batch_stats), jax.tree.leaves(bs)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # Negative control: the weight step with the old alphas gives another loss.
    old_loss, _ = forward(state0.params, state0.batch_stats, w_old, tb, k_weight, True)
    assert abs(float(old_loss) - float(metrics["train_loss"])) > 1e-6


def test_fixed_alpha_uniform_weights():
    state0 = new_state(TOY, alpha_scale=1.0)
    state0 = state0._replace(arch=arch.decide_op(state0.arch, "normal", 2, 1))
    tb, key = batch(1), jax.random.key(3)
    _, k_weight = jax.random.split(key, 3)[1:]
    forward = methods.make_forward(TOY)
    uniform = {t: jnp.full((7, 3), 1 / 3) for t in ("normal", "reduce")}
    uniform["normal"] = uniform["normal"].at[2].set(jnp.eye(3)[1])
    expect, _ = forward(state0.params, state0.batch_stats, uniform, tb, k_weight, True)
    for flag, close in ((True, True), (False, False)):  # False: softmax of alphas ~ N(0, 1)
        _, m = jitted_step(TOY, "fixed_alpha", uniform=flag)(state0, tb, batch(2), key, 0.0)
        assert np.isclose(float(m["train_loss"]), float(expect), rtol=1e-6) == close


def test_same_key_same_state_different_key_differs():
    state0 = new_state(TOY)
    a, _ = run_steps(TOY, "sdarts_rs", state0, seed=5)
    b, _ = run_steps(TOY, "sdarts_rs", state0, seed=5)
    c, _ = run_steps(TOY, "sdarts_rs", state0, seed=6)
    assert not changed(a, b)
    assert changed(a.params, c.params)


# ---------------------------------------------------------------- second order


def decided_arch(space, seed=1, scale=1.0):
    """Alphas ~ N(0, 1); normal edge 2 decided; reduce state 3 keeps edges (2, 4)."""
    a = arch.init_arch_state(jax.random.key(seed), space, scale=scale)
    a = arch.decide_op(a, "normal", 2, 1)
    for e in (2, 3, 4):
        a = arch.decide_op(a, "reduce", e, 0)
    return arch.prune_node(a, space, "reduce", 3, keep=(2, 4))


@functools.cache
def unrolled_fns(model):
    forward = methods.make_forward(model)

    def loss(params, bs, alphas, a, tb, vb, key, xi):
        return arch_grads.unrolled_valid_loss(forward, params, bs, alphas, a, tb, vb, key, xi)[0]

    def grads(rule, params, bs, a, tb, vb, key, xi):
        return rule(forward, params, bs, a, tb, vb, key, xi)[0]

    return jit(loss), jit(grads, static_argnums=0)


# DARTS's radius r = 0.01 moves the toy's ~300 weights too far for a Hessian-vector
# finite difference (cosine ~0.85 even in float64); r = 1e-3 is in the linear regime.
FD_RULE = functools.partial(arch_grads.second_order_fd, r=1e-3)


@functools.cache
def second_order_x64():
    """Toy gradients in float64, xi = 0.5: first order, exact second order, the FD
    Hessian rule, and a central difference of the unrolled loss along a direction."""
    with jax.enable_x64(True):
        f64 = lambda t: jax.tree.map(lambda v: jnp.asarray(v, jnp.float64), t)
        state, a = new_state(TOY), decided_arch(TOY.space)
        a = a._replace(alphas=f64(a.alphas))
        args = (f64(state.params), f64(state.batch_stats), a)
        data = [(jnp.asarray(x, jnp.float64), y) for x, y in (batch(1), batch(2))]
        data += [jax.random.key(4), jnp.float64(0.5)]
        loss, grads = unrolled_fns(TOY)
        out = {
            name: jax.tree.map(np.asarray, grads(rule, *args, *data))
            for name, rule in (
                ("first", arch_grads.first_order),
                ("exact", arch_grads.second_order),
                ("fd_rule", FD_RULE),
            )
        }
        assert out["exact"]["normal"].dtype == np.float64
        d = {
            t: np.random.default_rng(i).normal(size=v.shape)
            for i, (t, v) in enumerate(a.alphas.items())
        }
        h = 1e-4

        def along(sign):
            alphas = {t: a.alphas[t] + sign * h * d[t] for t in d}
            return float(loss(args[0], args[1], alphas, a, *data))

        out["direction"] = d
        out["central_difference"] = (along(1.0) - along(-1.0)) / (2 * h)
        return out


def flat(g):
    return np.concatenate([np.ravel(g[t]) for t in sorted(g)])


def cosine(u, v):
    return float(u @ v / np.linalg.norm(u) / np.linalg.norm(v))


def test_second_order_gradient_matches_finite_differences():
    r = second_order_x64()
    fd, d = r["central_difference"], r["direction"]
    dot = lambda g: float(sum(np.sum(g[t] * d[t]) for t in d))
    assert dot(r["exact"]) == pytest.approx(fd, rel=1e-6, abs=1e-10)
    # Negative control: the first-order gradient misses the unrolled term.
    assert abs(dot(r["first"]) - fd) > 1e-2 * abs(fd)
    # The `where` blocks gradients of decided and pruned rows in second order too.
    assert np.all(r["exact"]["normal"][2] == 0) and np.all(r["exact"]["reduce"][2:5] == 0)


def test_finite_difference_hessian_approximates_exact_second_order():
    r = second_order_x64()
    g1, g2, g_fd = flat(r["first"]), flat(r["exact"]), flat(r["fd_rule"])
    assert cosine(g2, g_fd) > 0.9999
    assert np.linalg.norm(g2 - g_fd) < 1e-3 * np.linalg.norm(g2 - g1)  # not just first order


# ---------------------------------------------------------------- SDARTS


def test_sdarts_epsilon_ramp():
    assert perturb.sdarts_epsilon(0, 50) == pytest.approx(0.03)
    assert perturb.sdarts_epsilon(49, 50) == pytest.approx(0.03 + 0.27 * 49 / 50)
    assert perturb.sdarts_epsilon(10, 100, eps_max=0.5, eps_min=0.0) == pytest.approx(0.05)


def test_clip_probs_hand_worked_rows():
    p = jnp.array(
        [
            [0.5, -0.2, 0.7],  # negative clamped -> [0.5, 0, 0.7] / 1.2
            [-0.1, -0.05, -0.3],  # all clamp to 0 -> one-hot at the argmax (index 1)
            [1.4, 0.2, 0.2],  # > 1 clamped -> [1, 0.2, 0.2] / 1.4
            [0.2, 0.3, 0.5],  # already a distribution: unchanged
        ]
    )
    expect = [
        [0.5 / 1.2, 0.0, 0.7 / 1.2],
        [0.0, 1.0, 0.0],
        [1 / 1.4, 0.2 / 1.4, 0.2 / 1.4],
        [0.2, 0.3, 0.5],
    ]
    np.testing.assert_allclose(perturb.clip_probs(p), expect, rtol=1e-6)


def test_random_smoothing_touches_only_undecided_kept_rows():
    space = spaces.get_space("s5")
    a = decided_arch(space)
    w = arch.mixing_weights(a)
    rows = perturb.perturbable_rows(a)
    assert not bool(rows["normal"][2]) and not bool(jnp.any(rows["reduce"][2:5]))
    for noise in ("uniform", "gaussian"):
        p = jit(perturb.random_smoothing, static_argnums=4)(w, rows, jax.random.key(0), 0.3, noise)
        for t in p:
            np.testing.assert_array_equal(p[t][~rows[t]], w[t][~rows[t]])
            assert bool(jnp.all(jnp.abs(p[t][rows[t]] - w[t][rows[t]]).max(axis=1) > 1e-3))
            np.testing.assert_allclose(jnp.sum(p[t][rows[t]], axis=1), 1.0, rtol=1e-6)
            assert bool(jnp.all(p[t] >= 0))
        np.testing.assert_array_equal(p["normal"][2], np.eye(7)[1])  # decided: one-hot
        np.testing.assert_array_equal(p["reduce"][3], np.zeros(7))  # pruned: zero
    uniform = perturb.random_smoothing(w, rows, jax.random.key(0), 0.3, "uniform")
    assert changed(uniform, p)  # gaussian draws other noise


P0 = {
    "cell": jnp.array(
        [
            [0.3, 0.2, 0.25, 0.25],
            [0.4, 0.3, 0.2, 0.1],
            [0.25, 0.25, 0.25, 0.25],
            [0.0, 1.0, 0.0, 0.0],  # decided
        ]
    )
}
ROWS = {"cell": jnp.array([True, True, True, False])}
# Sign-balanced rows 0 and 1: the ascent ends on p0 + eps * sign(c) with rows still
# summing to 1. Row 2's loss is constant on the simplex.
C = {"cell": np.array([[1.0, 2, -1, -3], [-1, 1, -2, 2], [1, 1, 1, 1], [1, -1, 1, -1]])}


def linear_loss(p):
    return jnp.sum(C["cell"] * p["cell"])


def peak_loss(p):  # maximal at P0: every move lowers it
    return -jnp.sum((p["cell"] - P0["cell"]) ** 2)


@pytest.mark.parametrize("seed", [0, 1])
def test_pgd_ascends_within_the_eps_ball(seed):
    eps = 0.1
    p, m = jit(perturb.pgd_linf, static_argnums=0)(linear_loss, P0, ROWS, jax.random.key(seed), eps)
    q, q0 = np.asarray(p["cell"]), np.asarray(P0["cell"])
    np.testing.assert_allclose(q[:2], q0[:2] + eps * np.sign(C["cell"][:2]), atol=1e-6)
    assert np.abs(q - q0).max() <= eps + 1e-6
    np.testing.assert_allclose(q.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(q[3], q0[3])
    assert float(m["adv_loss_after"]) > float(m["adv_loss_before"]) and m["adv_reverted"] == 0


def test_pgd_reverts_when_the_loss_drops():
    p, m = jit(perturb.pgd_linf, static_argnums=0)(peak_loss, P0, ROWS, jax.random.key(0), 0.1)
    assert m["adv_reverted"] == 1 and float(m["adv_loss_after"]) < 0.0
    np.testing.assert_array_equal(p["cell"], P0["cell"])


def test_sdarts_adv_step_on_toy_with_decisions():
    state = new_state(TOY)._replace(arch=decided_arch(TOY.space, scale=1e-3))
    state, history = run_steps(TOY, "sdarts_adv", state, epsilon=0.2)
    for m in history:
        assert m["adv_reverted"] == 1 or m["adv_loss_after"] >= m["adv_loss_before"]
    # Decided rows of the Adam-updated alphas do not matter: weights stay one-hot/zero.
    w = arch.mixing_weights(state.arch)
    np.testing.assert_array_equal(w["normal"][2], np.eye(3)[1])
    np.testing.assert_array_equal(w["reduce"][3], np.zeros(3))


# ---------------------------------------------------------------- real supernets


def tiny_darts(ops=OPS, edges=EDGES):
    return supernet.DartsSupernet(small_space(ops, edges), C=4, layers=3, num_classes=5)


def tiny_nb201():
    return supernet.NB201Supernet(spaces.get_space("nb201"), C=4, N=1, num_classes=5)


def test_darts_steps_on_tiny_darts_supernet():
    # Five edges, no conv ops: the smallest DARTS supernet with both cell types.
    model = tiny_darts(("max_pool_3x3", "skip_connect"), EDGES[:2] + EDGES[4:])
    state, before, _ = check_two_steps(model, "darts", size=8)
    assert changed(state.arch.alphas, before.arch.alphas)


def test_darts_steps_on_tiny_nb201_supernet():
    state, before, _ = check_two_steps(tiny_nb201(), "darts", size=8)
    assert changed(state.arch.alphas, before.arch.alphas)


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(methods.METHODS))
def test_every_method_on_tiny_darts_supernet(method):
    state, before, _ = check_two_steps(tiny_darts(), method, size=8)
    assert changed(state.arch.alphas, before.arch.alphas) == (method != "fixed_alpha")


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="known: on this tiny float32 supernet DARTS's finite-difference Hessian term is "
    "dominated by rounding (cosine 0.04 at r=0.01, worse at smaller r; also with the "
    "plain XLA depthwise conv and no fusion barriers); the FD rule itself is checked "
    "against the exact gradient on the toy supernet",
)
def test_second_order_fd_on_tiny_darts_supernet():
    model = tiny_darts()
    state, a = new_state(model, size=8), decided_arch(model.space)
    _, grads = unrolled_fns(model)
    args = (state.params, state.batch_stats, a, batch(1, size=8), batch(2, size=8))
    args += (jax.random.key(4), 0.5)
    g2 = flat(grads(arch_grads.second_order, *args))
    g_fd = flat(grads(arch_grads.second_order_fd, *args))  # DARTS's r = 0.01
    assert cosine(g2, g_fd) > 0.99
