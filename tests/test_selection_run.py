"""The select stage end to end on toy supernets: PT finds the op the network relies on
where magnitude does not, artifacts, one compilation per kind for a whole run, and
resume after an event == uninterrupted."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_selection import NB201, S3, ToySupernet

from nas_jax import checkpoint, config_lib, selection
from nas_jax.search import methods, optim
from nas_jax.search import run as search_run


def make_config(**select):
    c = config_lib.base_config()
    c.seed = 0
    c.log_every_seconds = 60.0
    c.data.update(batch_size=16, pad=0, flip=False)
    c.search.update(epochs=1, steps_per_epoch=2)
    c.select = config_lib.select_defaults()
    c.select.update(select)
    return c


def make_setup(model, config):
    spe = config.search.steps_per_epoch
    weight_tx = optim.weight_optimizer(optim.constant_schedule(config.search.lr))
    arch_tx = optim.arch_optimizer()
    sched = optim.constant_schedule(config.search.lr)
    return search_run.SearchSetup(model.space, model, weight_tx, arch_tx, sched, spe, spe)


def separable_data(n, seed, num_classes=2):
    """Feature 0 carries the class (dark = 0, bright = 1); feature 1 is noise."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % num_classes
    x = np.zeros((n, 1, 2, 1), np.uint8)
    x[:, 0, 0, 0] = np.where(y == 1, rng.integers(215, 256, n), rng.integers(0, 41, n))
    x[:, 0, 1, 0] = rng.integers(0, 256, n)
    return jnp.asarray(x), jnp.asarray(y.astype(np.int32))


def search_data(n=64):
    tx, ty = separable_data(n, 1)
    vx, vy = separable_data(n, 2)
    return search_run.SearchData(tx, ty, vx, vy, mean=(0.5,), std=(0.25,), num_classes=2)


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


# ------------------------------------------------------------------------------------
# PT vs magnitude on a supernet whose useful op is known
# ------------------------------------------------------------------------------------


def hand_made_nb201_state(setup):
    """Only skip_connect of edge 3 (node 0 -> node 3, the output) carries the input; all
    other ops output zero (scale 0). Alpha of edge 3 favours avg_pool_3x3, which does
    nothing."""
    model = setup.model
    state = methods.create_search_state(
        model, jax.random.key(0), jnp.zeros((2, 1, 2, 1)), NB201, setup.weight_tx, setup.arch_tx
    )
    eye = jnp.eye(2)
    params = jax.tree.map(jnp.zeros_like, state.params)
    params["stem"]["kernel"] = eye
    params["cell_e3"]["kernel"] = eye
    params["cell_e3_ops"]["scale"] = jnp.array([0.0, 1.0, 0.0, 0.0, 0.0])  # skip_connect = identity
    params["head"]["kernel"] = jnp.array([[-5.0, 5.0], [0.0, 0.0]])  # class 1 iff h0 > 0
    alphas = {"cell": state.arch.alphas["cell"].at[3].set(jnp.array([0.0, 0.0, 0.0, 0.0, 3.0]))}
    a = state.arch._replace(alphas=alphas)
    return state._replace(params=params, arch=a, arch_opt_state=setup.arch_tx.init(alphas))


@pytest.fixture(scope="module")
def nb201_toy():
    model = ToySupernet(NB201, width=2, num_classes=2)
    setup = make_setup(model, make_config())
    return setup, hand_made_nb201_state(setup), search_data()


def test_pt_finds_the_op_the_supernet_relies_on_where_magnitude_fails(
    nb201_toy, tmp_path, monkeypatch
):
    setup, state, sd = nb201_toy
    result = selection.select(make_config(tune_epochs=0), str(tmp_path), state, setup, sd)
    assert result.genotype.ops[3] == "skip_connect"
    assert result.magnitude_genotype.ops[3] == "avg_pool_3x3"
    rec = next(r for r in result.records if r["edge"] == 3)
    assert rec["candidates"] == list(NB201.edge_ops("cell", 3))
    assert rec["acc"][1] <= 60.0 and min(np.delete(rec["acc"], 1)) >= 90.0
    assert rec["choice"] == "skip_connect" and rec["valid_acc_after"] >= 90.0
    # Edges that carry nothing score a tie everywhere: the first op ('none') is kept.
    assert all(r["choice"] == "none" for r in result.records if r["edge"] != 3)

    # Artifacts.
    assert len(read_jsonl(tmp_path / "decisions.jsonl")) == 6
    g = json.loads((tmp_path / "genotype.json").read_text())
    assert g["method"] == "pt" and g["text"] == result.genotype.to_text()
    assert g["magnitude"] == result.magnitude_genotype.to_text()
    m = json.loads((tmp_path / "genotype_magnitude.json").read_text())
    assert m["text"] == result.magnitude_genotype.to_text()
    assert '-> "cell:3" [label="skip_connect"]' in (tmp_path / "cells.dot").read_text()
    assert sorted(os.listdir(tmp_path / "checkpoints_select")) == [str(i) for i in range(6)]

    # Negative control: PT-Mag chooses by alpha, on the same supernet.
    no_checkpoints(monkeypatch)
    mag = selection.select(
        make_config(method="pt_mag", tune_epochs=0), str(tmp_path / "mag"), state, setup, sd
    )
    assert mag.genotype.ops[3] == "avg_pool_3x3"
    plain = selection.select(make_config(method="magnitude"), str(tmp_path / "m"), state, setup, sd)
    assert plain.genotype == plain.magnitude_genotype == result.magnitude_genotype


# ------------------------------------------------------------------------------------
# Whole runs with tuning: compilations, topology, resume
# ------------------------------------------------------------------------------------


def no_checkpoints(monkeypatch):
    """Orbax needs ~0.5 s per save on this CPU; tests that do not resume skip them."""
    monkeypatch.setattr(checkpoint.Checkpointer, "save", lambda self, step, state, meta: None)


def random_state(setup, space, alpha_scale=500.0):
    state = methods.create_search_state(
        setup.model,
        jax.random.key(0),
        jnp.zeros((2, 1, 2, 1)),
        space,
        setup.weight_tx,
        setup.arch_tx,
    )
    a = state.arch._replace(alphas=jax.tree.map(lambda x: x * alpha_scale, state.arch.alphas))
    return state._replace(arch=a)


@pytest.fixture(scope="module")
def darts_toy():
    model = ToySupernet(S3, width=4, num_classes=2)
    setup = make_setup(model, make_config())
    return setup, random_state(setup, S3), search_data(48)


def state_leaves(state):
    return [np.asarray(x) for x in jax.tree.leaves(state)]


def test_darts_run_compiles_once_per_kind(darts_toy, tmp_path, monkeypatch):
    setup, state, sd = darts_toy
    no_checkpoints(monkeypatch)
    config = make_config(tune_epochs=1, eval_batches=2)
    result = selection.select(config, str(tmp_path), state, setup, sd)
    assert result.trace_counts == {
        ("op", "normal"): 1,
        ("op", "reduce"): 1,
        ("edge", "normal"): 1,
        ("edge", "reduce"): 1,
        ("base", None): 1,
        ("tune", None): 1,
    }
    records = result.records
    assert len(records) == 2 * 14 + 2 * 3
    assert [r["event"] for r in records] == [i // 2 for i in range(34)]
    nodes = [r for r in records if r["kind"] == "node"]
    assert sorted(len(r["rounds"]) for r in nodes) == [1, 1, 2, 2, 3, 3]  # 3, 4, 5 inputs
    for r in nodes:  # the last round's survivors minus the removed one are kept
        last = r["rounds"][-1]
        assert r["choice"] == [e for e in last["candidates"] if e != last["removed"]]
    tune = read_jsonl(tmp_path / "select_metrics.jsonl")
    assert [r["epoch"] for r in tune] == list(range(17))
    assert int(result.state.step) == int(state.step) + 17 * 2
    assert all(r["lr"] == pytest.approx(config.search.lr * 0.1) for r in tune)
    for t in ("normal", "reduce"):
        assert bool(jnp.all(result.state.arch.decided_op[t] >= 0))
        assert int(jnp.sum(result.state.arch.edge_kept[t])) == 8
    # Tuning trained the weights and (darts) the alphas; the caller's state is intact.
    assert not np.allclose(result.state.params["head"]["kernel"], state.params["head"]["kernel"])
    assert not np.allclose(result.state.arch.alphas["normal"], state.arch.alphas["normal"])
    assert int(state.step) == 0


def test_one_shot_topology_and_validation(darts_toy, tmp_path, monkeypatch):
    setup, state, sd = darts_toy
    no_checkpoints(monkeypatch)
    config = make_config(tune_epochs=0, eval_batches=1, topology="one_shot", log_accuracy=False)
    result = selection.select(config, str(tmp_path), state, setup, sd)
    nodes = [r for r in result.records if r["kind"] == "node"]
    assert all(len(r["rounds"]) == 1 for r in nodes)
    for r in nodes:  # the two lowest accuracies when removed, ties to the lower id
        order = np.argsort(r["acc"], kind="stable")[:2]
        assert r["choice"] == sorted(r["candidates"][i] for i in order)
    assert "valid_acc_before" not in result.records[0]

    config.model.space = "nb201"
    config.select.tune_epochs = 1
    with pytest.raises(config_lib.ConfigError, match="5 decision epochs for 6 events"):
        selection.validate_config(config)
    config.select.update(tune_epochs=5, topology="greedy")
    with pytest.raises(config_lib.ConfigError, match="select.topology='greedy'.*iterative"):
        selection.validate_config(config)


def test_resume_after_an_event_equals_uninterrupted(tmp_path, monkeypatch):
    model = ToySupernet(NB201, width=4, num_classes=2)
    setup = make_setup(model, make_config())
    state, sd = random_state(setup, NB201, alpha_scale=1.0), search_data(48)
    config = make_config(tune_epochs=2, eval_batches=2)  # decisions at epochs 0,2,4,6,8,9
    full = selection.select(config, str(tmp_path / "full"), state, setup, sd)
    tune = read_jsonl(tmp_path / "full" / "select_metrics.jsonl")
    assert [r["epoch"] for r in tune] == list(range(10))

    real_save = checkpoint.Checkpointer.save
    saves = []

    def save_then_die(self, step, st, meta):
        real_save(self, step, st, meta)
        saves.append(step)
        if len(saves) == 3:
            raise KeyboardInterrupt("simulated kill after event 2 and its tuning")

    cut = str(tmp_path / "cut")
    monkeypatch.setattr(checkpoint.Checkpointer, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        selection.select(config, cut, state, setup, sd)
    monkeypatch.setattr(checkpoint.Checkpointer, "save", real_save)
    assert not os.path.exists(os.path.join(cut, "genotype.json"))
    resumed = selection.select(config, cut, state, setup, sd)
    assert resumed.genotype == full.genotype
    assert resumed.records == full.records  # redone events are not duplicated
    assert read_jsonl(os.path.join(cut, "select_metrics.jsonl")) == tune
    for a, b in zip(state_leaves(resumed.state), state_leaves(full.state), strict=True):
        np.testing.assert_array_equal(a, b)

    # Negative control: another seed decides the edges in another order.
    no_checkpoints(monkeypatch)
    config.seed, config.select.tune_epochs = 1, 0
    other = selection.select(config, str(tmp_path / "other"), state, setup, sd)
    assert [r["edge"] for r in other.records] != [r["edge"] for r in full.records]
