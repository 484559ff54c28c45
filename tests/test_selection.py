"""Selection pieces: batched scoring == a loop over single removals, one compilation for
every decision, decision rules on hand-made score tables, the schedule's counts.

Scoring runs on a toy supernet with the supernets' call signature (dense ops on the
same cell graph, BN in train mode) because XLA:CPU needs tens of seconds per real
supernet; the selection code is model-agnostic. `-m slow` repeats the equality on
the real NB201 supernet.
"""

import collections

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nas_jax import arch, ops, spaces, supernet
from nas_jax.init import init_variables
from nas_jax.selection import decisions, schedule, scoring


class OpScales(nn.Module):
    num_ops: int

    @nn.compact
    def __call__(self):
        return self.param("scale", nn.initializers.ones, (self.num_ops,))


class ToySupernet(nn.Module):
    """The supernets' call signature on the same cell graph, cheap to compile: edge e
    computes z = Dense_e(input); op k = scale_{e,k} * act_k(z) ('none' = 0); nodes sum
    their edges; a non-affine BN after each cell, so scores depend on batch stats."""

    space: spaces.SearchSpace
    width: int = 4
    num_classes: int = 3

    @nn.compact
    def __call__(self, x_BxHxWxC, weights, *, train):
        acts = (lambda z: z, nn.relu, jnp.tanh)
        h = nn.Dense(self.width, name="stem")(x_BxHxWxC.reshape(x_BxHxWxC.shape[0], -1))
        darts = self.space.family == "darts"
        for t in self.space.cell_types:
            states = [h, h] if darts else [h]
            for _, eids in sorted(self.space.node_edges.items()):
                node = 0.0
                for e in eids:
                    z = nn.Dense(self.width, name=f"{t}_e{e}")(states[self.space.edges[e][1]])
                    names = self.space.edge_ops(t, e)
                    scale_K = OpScales(len(names), name=f"{t}_e{e}_ops")()
                    for k, name in enumerate(names):
                        if name != "none":
                            node = node + weights[t][e, k] * scale_K[k] * acts[k % 3](z)
                states.append(node)
            h = sum(states[2:]) if darts else states[-1]
            h = ops.batch_norm(False, name=f"{t}_bn")(h, use_running_average=not train)
        return nn.Dense(self.num_classes, name="head")(h)


S3 = spaces.get_space("s3")  # none, skip_connect, sep_conv_3x3 on 14 edges
NB201 = spaces.get_space("nb201")
PROTOCOL = scoring.DataProtocol(batch_size=16, mean=(0.5,), std=(0.25,), pad=1, flip=True)


def toy_data(n=40, seed=0, num_classes=3):
    """(uint8 images, labels): the held-out split a scorer reads."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 2, 2, 1), dtype=np.uint8)
    return jnp.asarray(x), jnp.asarray(rng.integers(0, num_classes, n).astype(np.int32))


def toy_variables(model, seed=0, alpha_scale=1.0):
    a = arch.init_arch_state(jax.random.key(seed + 1), model.space, scale=alpha_scale)
    x = jnp.zeros((2, 2, 2, 1))
    v = init_variables(model, jax.random.key(seed), x, arch.mixing_weights(a), train=True)
    # Non-trivial running statistics, so write-back checks see real updates.
    v["batch_stats"] = jax.tree.map(lambda s: s + 0.5, v["batch_stats"])
    return v, a


TOY = ToySupernet(S3)


@pytest.fixture(scope="module")
def toy():
    variables, a = toy_variables(TOY)
    a = arch.decide_op(a, "normal", 0, 2)  # a decided edge among undecided ones
    return variables, arch.mixing_weights(a)


@pytest.fixture(scope="module")
def scorer():
    return scoring.Scorer(TOY, PROTOCOL, max_edges=5)


def test_batched_scores_equal_a_loop_over_single_removals(toy, scorer):
    variables, w = toy
    split, key = toy_data(), jax.random.key(7)
    nb = PROTOCOL.num_batches(40)
    assert nb == 3  # 16 + 16 + 8: the last batch is topped up and masked

    def loop(weights_list):
        return np.array([scorer.evaluate(variables, wv, split, key, nb) for wv in weights_list])

    s = scorer.score_ops(variables, w, "reduce", 5, split, key, nb)
    looped = loop([arch.remove_op(w, "reduce", 5, k) for k in range(3)])
    np.testing.assert_allclose(s.acc, looped[:, 0], atol=1e-9)
    np.testing.assert_allclose(s.loss, looped[:, 1], rtol=2e-6)
    assert len(set(np.round(s.loss, 5))) == 3  # the variants really differ
    # Negative control: the loop over another edge gives other numbers.
    other = loop([arch.remove_op(w, "reduce", 6, k) for k in range(3)])
    assert not np.allclose(s.loss, other[:, 1], rtol=1e-4)

    edges = (9, 10, 11, 12, 13)  # the five inputs of state 5
    e = scorer.score_edges(variables, w, "normal", edges, split, key, nb)
    looped = loop([arch.remove_edge(w, "normal", i) for i in edges])
    np.testing.assert_allclose(e.loss, looped[:, 1], rtol=2e-6)
    np.testing.assert_allclose(e.acc, looped[:, 0], atol=1e-9)
    e3 = scorer.score_edges(variables, w, "normal", edges[:3], split, key, nb)  # padded
    np.testing.assert_allclose(e3.loss, e.loss[:3], rtol=2e-6)
    assert not np.allclose(e.loss, looped[::-1, 1], rtol=1e-4)


@jax.jit
def toy_forward(variables, x, w):
    return TOY.apply(variables, x, w, train=True, mutable=["batch_stats"])


def test_evaluate_equals_a_plain_forward_loop(toy, scorer):
    variables, w = toy
    split, key = toy_data(), jax.random.key(3)
    acc, loss = scorer.evaluate(variables, w, split, key, 3)
    k_data, _ = jax.random.split(key)  # the scorer's data stream
    correct = total = loss_sum = 0.0
    for b in range(3):
        x, y, mask = scoring.draw_batch(PROTOCOL, *split, k_data, b)
        logits, _ = toy_forward(variables, x, w)
        m = np.asarray(mask)
        ce = -jax.nn.log_softmax(logits)[jnp.arange(len(y)), y]
        correct += float(np.sum((np.argmax(logits, -1) == np.asarray(y)) * m))
        loss_sum += float(np.sum(np.asarray(ce) * m))
        total += m.sum()
    assert total == 40
    assert acc == pytest.approx(100 * correct / total)
    assert loss == pytest.approx(loss_sum / total, rel=1e-5)
    # Negative control: another key draws other batches (augmentation, BN batches).
    other = scorer.evaluate(variables, w, split, jax.random.key(4), 3)[1]
    assert other != pytest.approx(loss, rel=1e-6)


def test_chunked_scoring_equals_vmap(toy, scorer):
    variables, w = toy
    args = (variables, w, "reduce", 4, toy_data(), jax.random.key(1), 3)
    chunked = scoring.Scorer(TOY, PROTOCOL, chunk=2)  # 3 variants: a chunk and a remainder
    a, b = scorer.score_ops(*args), chunked.score_ops(*args)
    np.testing.assert_allclose(a.acc, b.acc)
    np.testing.assert_allclose(a.loss, b.loss, rtol=2e-6)


def test_write_back_reproduces_the_sequential_reference_ema(toy):
    variables, w = toy
    split, key = toy_data(), jax.random.key(2)
    writer = scoring.Scorer(TOY, PROTOCOL, write_back=True)
    s = writer.score_ops(variables, w, "normal", 7, split, key, 3)

    def sequential(order):  # the reference: variant after variant, batch after batch
        stats = variables["batch_stats"]
        for k in order:
            for b in range(3):
                x, _, _ = scoring.draw_batch(PROTOCOL, *split, jax.random.split(key)[0], b)
                wk = arch.remove_op(w, "normal", 7, k)
                _, new = toy_forward({"params": variables["params"], "batch_stats": stats}, x, wk)
                stats = new["batch_stats"]
        return stats

    def close(a, b):
        pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
        return all(np.allclose(x, y, rtol=1e-5, atol=1e-6) for x, y in pairs)

    assert close(s.batch_stats, sequential([0, 1, 2]))
    # Negative controls: the order matters, and without write-back nothing changes.
    assert not close(s.batch_stats, sequential([2, 1, 0]))
    plain = scoring.Scorer(TOY, PROTOCOL).score_ops(variables, w, "normal", 7, split, key, 3)
    assert plain.batch_stats is variables["batch_stats"]
    np.testing.assert_allclose(plain.loss, s.loss, rtol=2e-6)


def test_one_compilation_serves_every_decision(toy):
    variables, w = toy
    split = toy_data()
    sc = scoring.Scorer(TOY, PROTOCOL, max_edges=5)
    a = arch.init_arch_state(jax.random.key(0), S3)
    for i, edge in enumerate((3, 0, 13, 7)):
        for t in ("normal", "reduce"):
            s = sc.score_ops(
                variables, arch.mixing_weights(a), t, edge, split, jax.random.key(i), 1
            )
            a = arch.decide_op(a, t, edge, int(np.argmin(s.acc)))
    for eids in ((2, 3, 4), (5, 6, 7, 8), (9, 10, 11, 12, 13), (9, 12)):  # 3, 4, 5 inputs
        sc.score_edges(
            variables, arch.mixing_weights(a), "normal", eids, split, jax.random.key(9), 1
        )
    sc.evaluate(variables, arch.mixing_weights(a), split, jax.random.key(0), 2)
    assert sc.trace_counts == {
        ("op", "normal"): 1, ("op", "reduce"): 1, ("edge", "normal"): 1, ("base", None): 1,
    }  # fmt: skip

    # Negative control: the same counter sees a retrace per edge once the edge is static.
    traces = collections.Counter()
    score = scoring.make_variant_scorer(TOY)

    def by_edge(edge, variables, w, x, y, mask, key):
        traces[edge] += 1
        return scoring.score_op_removals(
            score, variables, w, edge, x, y, mask, key, cell_type="normal"
        )

    static = jax.jit(by_edge, static_argnums=0)
    x, y, mask = scoring.draw_batch(PROTOCOL, *split, jax.random.key(0), 0)
    for edge in (1, 2, 1, 3):
        static(edge, variables, w, x, y, mask, jax.random.key(0))
    assert traces == {1: 1, 2: 1, 3: 1}


@pytest.mark.slow
def test_batched_scores_equal_loop_on_the_real_nb201_supernet():
    model = supernet.NB201Supernet(NB201, C=4, N=1, num_classes=3)
    protocol = scoring.DataProtocol(batch_size=8, mean=(0.5,) * 3, std=(0.25,) * 3, pad=1)
    rng = np.random.default_rng(0)
    split = (
        jnp.asarray(rng.integers(0, 256, (12, 8, 8, 3), dtype=np.uint8)),
        jnp.asarray(rng.integers(0, 3, 12).astype(np.int32)),
    )
    w = arch.mixing_weights(arch.init_arch_state(jax.random.key(1), NB201, scale=1.0))
    v = init_variables(model, jax.random.key(0), jnp.zeros((2, 8, 8, 3)), w, train=True)
    sc = scoring.Scorer(model, protocol)
    s = sc.score_ops(v, w, "cell", 2, split, jax.random.key(5), 2)
    variants = [arch.remove_op(w, "cell", 2, k) for k in range(5)]
    looped = np.array([sc.evaluate(v, wk, split, jax.random.key(5), 2) for wk in variants])
    np.testing.assert_allclose(s.loss, looped[:, 1], rtol=1e-4)
    np.testing.assert_allclose(s.acc, looped[:, 0])
    assert len(set(np.round(s.loss, 4))) == 5


# ------------------------------------------------------------------------------------
# Decision rules
# ------------------------------------------------------------------------------------


def test_op_choice_ties_keep_the_first_op():
    assert decisions.choose_op([80.0, 40.0, 40.0, 90.0], [0, 0, 0, 0]) == 1
    assert decisions.choose_op([0, 0, 0], [1.0, 3.0, 3.0], "loss") == 1
    assert decisions.choose_op([50.0, 50.0], [2.0, 1.0]) == 0
    with pytest.raises(ValueError, match="accepted: acc, loss"):
        decisions.choose_op([1.0], [1.0], "top5")


def test_iterative_elimination_on_a_hand_made_table():
    # acc when the edge is removed alone; rescored rounds can change the numbers.
    table = {
        (9, 10, 11, 12, 13): [70.0, 85.0, 60.0, 85.0, 50.0],  # tie 10/12: delete the later (12)
        (9, 10, 11, 13): [72.0, 71.0, 60.0, 50.0],  # delete 9
        (10, 11, 13): [60.0, 60.0, 55.0],  # tie 10/11: delete 11
    }
    calls = []

    def score(survivors):
        calls.append(survivors)
        return table[survivors], [0.0] * len(survivors)

    kept, rounds = decisions.eliminate_edges(score, (9, 10, 11, 12, 13), "acc")
    assert kept == (10, 13)
    assert [r["removed"] for r in rounds] == [12, 9, 11]
    assert calls == list(table)  # 5 + 4 + 3 passes, survivors re-scored each round
    # 'loss': delete the lowest loss, ties the later edge.
    loss_table = {(2, 3, 4): [1.0, 0.5, 0.5], (2, 3): None}
    kept, rounds = decisions.eliminate_edges(
        lambda s: ([0] * len(s), loss_table[s]), (2, 3, 4), "loss"
    )
    assert kept == (2, 3) and rounds[0]["removed"] == 4
    # Negative control: with `>` instead of `>=` the tie would delete edge 10 first.
    assert decisions.edge_to_delete([70.0, 85.0, 60.0, 85.0], [0] * 4) == 3


def test_one_shot_topology_keeps_the_two_lowest():
    eids = (9, 10, 11, 12, 13)
    acc = [70.0, 85.0, 60.0, 85.0, 50.0]
    assert decisions.keep_two_one_shot(eids, acc, [0] * 5) == (11, 13)
    assert decisions.keep_two_one_shot(eids, [60.0, 50.0, 60.0, 70.0, 90.0], [0] * 5) == (9, 10)
    assert decisions.keep_two_one_shot(eids, [0] * 5, [1.0, 2.0, 0.1, 2.0, 0.5], "loss") == (10, 12)
    # One shot and iterative can disagree on the same first-round table.
    table = {eids: acc, (9, 10, 11, 13): [50.0, 90.0, 95.0, 40.0], (9, 10, 13): [50.0, 90.0, 40.0]}
    kept, _ = decisions.eliminate_edges(lambda s: (table[s], [0] * len(s)), eids)
    assert kept == (9, 13)


def test_magnitude_rules_skip_none_in_darts_only():
    names = ("none", "skip_connect", "sep_conv_3x3")
    assert decisions.magnitude_op([0.6, 0.2, 0.2], names, skip_none=True) == 1  # DARTS
    assert decisions.magnitude_op([0.6, 0.2, 0.2], names, skip_none=False) == 0  # NB201
    w = np.array([[0.9, 0.05, 0.05], [0.1, 0.3, 0.6], [0.1, 0.6, 0.3]])
    assert decisions.magnitude_edges((2, 3, 4), w, [names] * 3) == (3, 4)


# ------------------------------------------------------------------------------------
# Schedule
# ------------------------------------------------------------------------------------


def test_darts_schedule_matches_the_reference_counts():
    plan = schedule.make_plan(spaces.get_space("s5"), jax.random.key(2), interval=5)
    assert len(plan) == 17
    assert sum(ev.tune_epochs for ev in plan) == 81
    assert [ev.epoch for ev in plan] == list(range(0, 81, 5))
    assert [ev.tune_epochs for ev in plan] == [5] * 16 + [1]
    assert all(d.kind == "op" for ev in plan[:14] for d in ev.decisions)
    assert all(d.kind == "node" for ev in plan[14:] for d in ev.decisions)
    assert all([d.cell_type for d in ev.decisions] == ["normal", "reduce"] for ev in plan)
    for t in (0, 1):
        assert sorted(ev.decisions[t].target for ev in plan[:14]) == list(range(14))
        assert sorted(ev.decisions[t].target for ev in plan[14:]) == [3, 4, 5]
    assert schedule.tuning_epochs(17, 10, "darts") == 161
    # The edge order is a pure function of the key (resume), and another key changes it.
    again = schedule.make_plan(spaces.get_space("s5"), jax.random.key(2), interval=5)
    other = schedule.make_plan(spaces.get_space("s5"), jax.random.key(3), interval=5)
    assert again == plan and other != plan
    fixed = schedule.make_plan(spaces.get_space("s5"), jax.random.key(2), interval=5, order="fixed")
    assert [ev.decisions[0].target for ev in fixed] == list(range(14)) + [3, 4, 5]
    rev = schedule.make_plan(spaces.get_space("s5"), jax.random.key(2), interval=0, order="reverse")
    assert [ev.decisions[1].target for ev in rev] == list(range(13, -1, -1)) + [5, 4, 3]
    assert {(ev.epoch, ev.tune_epochs) for ev in rev} == {(0, 0)}


def test_nb201_schedule_matches_the_reference_counts():
    plan = schedule.make_plan(NB201, jax.random.key(0), interval=5)
    assert [ev.epoch for ev in plan] == [0, 5, 10, 15, 20, 24]
    assert [ev.tune_epochs for ev in plan] == [5, 5, 5, 5, 4, 1]
    assert sum(ev.tune_epochs for ev in plan) == 25
    assert sorted(ev.decisions[0].target for ev in plan) == list(range(6))
    assert all(len(ev.decisions) == 1 and ev.decisions[0].kind == "op" for ev in plan)
    with pytest.raises(ValueError, match="5 decision epochs for 6 events"):
        schedule.make_plan(NB201, jax.random.key(0), interval=1)
