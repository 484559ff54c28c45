"""The main job end to end: configs, artifacts, resume == uninterrupted, bad input."""

import importlib.util
import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds
from test_data_image_folder import _extract_subset, needs_archive

from nas_jax import checkpoint, config_lib, pipeline, show, spaces

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config(name, arg=None):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "configs", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(arg)
    config.xla_cache_dir = ""  # tests share conftest's compilation cache
    return config


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def final_arrays(workdir):
    ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"))
    step = ckpt.latest_step()
    path = os.path.join(workdir, "checkpoints", str(step), "state")
    ckpt.close()
    return step, path


def test_quickstart_smoke_writes_artifacts(tmp_path):
    config = load_config("quickstart", "smoke")
    assert tuple(config.stages) == ("search", "select") and config.select.method == "pt"
    pipeline.run(config, str(tmp_path))
    for name in ("config.json", "metrics.jsonl", "genotype.json", "genotype_magnitude.json",
                 "decisions.jsonl", "cells.dot", "cells.png"):  # fmt: skip
        assert (tmp_path / name).is_file(), name
    assert (tmp_path / "tensorboard").is_dir()
    if importlib.util.find_spec("matplotlib"):  # the `plots` extra: alpha pictures too
        assert (tmp_path / "alphas.png").is_file() and (tmp_path / "alpha_evolution.png").is_file()
    records = read_jsonl(tmp_path / "metrics.jsonl")
    assert [r["epoch"] for r in records] == [0, 1]
    assert all(np.isfinite(r["train_loss"]) for r in records)
    assert set(records[-1]["alphas_softmax"]) == {"cell"}
    space = spaces.get_space("nb201")
    named = records[-1]["alphas_softmax"]["cell"]  # {edge name: {op: weight}}
    assert list(named) == [space.edge_name(e) for e in range(6)]
    assert list(named)[:2] == ["node 1 <- node 0", "node 2 <- node 0"]
    for ops in named.values():
        assert list(ops) == list(space.edge_ops("cell", 0))
        assert sum(ops.values()) == pytest.approx(1.0, abs=1e-4)
    assert "epsilon" not in records[-1]  # DARTS has no perturbation radius
    g = json.loads((tmp_path / "genotype.json").read_text())
    assert g["genotype"]["family"] == "nb201" and g["method"] == "pt"
    magnitude = json.loads((tmp_path / "genotype_magnitude.json").read_text())
    assert magnitude["text"] == records[-1]["genotype"]  # the search's last read-out
    assert json.loads((tmp_path / "config.json").read_text())["data"]["name"] == "digits"
    decisions = read_jsonl(tmp_path / "decisions.jsonl")
    assert len(decisions) == 6  # one op decision per NB201 edge
    assert sorted(d["edge"] for d in decisions) == list(range(6))
    for d in decisions:  # the choice is the op whose removal hurts most (criterion acc)
        assert len(d["acc"]) == len(d["candidates"]) == 5
        assert d["choice"] == d["candidates"][int(np.argmin(d["acc"]))]
        assert d["edge_name"] == space.edge_name(d["edge"])
    assert [d["event"] for d in decisions] == list(range(6))  # 0-based, as the log says
    if importlib.util.find_spec("matplotlib"):  # the alpha heat-map of every epoch
        assert tensorboard_tags(tmp_path / "tensorboard" / "metrics", "alphas") == [3, 6]
    shown = show.format_summary(show.summarize(str(tmp_path)))
    assert "Search: 2/2 epochs" in shown and "softmax(alpha), cell:" in shown
    assert f"event 0: cell edge {decisions[0]['edge']} ({decisions[0]['edge_name']}): op " in shown
    assert f"Selected genotype: {g['text']}" in shown


def tensorboard_tags(folder, tag):
    """The steps at which the event files under `folder` hold an image named `tag`."""
    from tensorboardX.proto import event_pb2

    steps = []
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        at = 0
        while at < len(data):  # TFRecord: length (8), its crc (4), payload, crc (4)
            (n,) = struct.unpack("<Q", data[at : at + 8])
            event = event_pb2.Event.FromString(data[at + 12 : at + 12 + n])
            at += 16 + n
            for v in event.summary.value:
                if v.tag == tag and v.image.encoded_image_string.startswith(b"\x89PNG"):
                    steps.append(event.step)
    return steps


def _state_leaves(workdir, config):
    """The final search state, restored through the real code path."""
    from nas_jax.search import run as search_run

    sd = search_run.load_search_data(config.data)
    setup = search_run.make_setup(config, sd)
    import jax
    import jax.numpy as jnp

    from nas_jax.search import methods

    abstract = methods.create_search_state(
        setup.model, jax.random.key(0), jnp.zeros((2, *sd.train_x.shape[1:])), setup.space,
        setup.weight_tx, setup.arch_tx,
    )  # fmt: skip
    ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"))
    state, meta = ckpt.restore(abstract)
    ckpt.close()
    return jax.tree.leaves(state), meta


def test_resume_after_interruption_equals_uninterrupted(tmp_path, monkeypatch):
    config = load_config("quickstart", "smoke")
    config.stages = ("search",)  # selection's resume: tests/test_selection_run.py
    config.search.epochs = 3
    full, cut = str(tmp_path / "full"), str(tmp_path / "cut")
    pipeline.run(config, full)

    real_save = checkpoint.Checkpointer.save
    calls = []

    def save_then_die(self, step, state, meta):
        real_save(self, step, state, meta)
        calls.append(step)
        if len(calls) == 2:
            raise KeyboardInterrupt("simulated kill after the second checkpoint")

    monkeypatch.setattr(checkpoint.Checkpointer, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run(config, cut)
    monkeypatch.setattr(checkpoint.Checkpointer, "save", real_save)
    assert not os.path.exists(os.path.join(cut, "genotype.json"))
    pipeline.run(config, cut)  # the same command again: resumes at epoch 2

    leaves_full, meta_full = _state_leaves(full, config)
    leaves_cut, meta_cut = _state_leaves(cut, config)
    assert meta_full == meta_cut == {"epoch": 3, "stage": "search"}
    for a, b in zip(leaves_full, leaves_cut, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert read_jsonl(os.path.join(cut, "metrics.jsonl")) != []
    epochs = [r["epoch"] for r in read_jsonl(os.path.join(cut, "metrics.jsonl"))]
    assert epochs == [0, 1, 2]  # the redone epoch is not duplicated
    g_full = json.loads(open(os.path.join(full, "genotype.json")).read())
    g_cut = json.loads(open(os.path.join(cut, "genotype.json")).read())
    assert g_full == g_cut

    # Negative control: another seed gives other weights.
    other = str(tmp_path / "other")
    config.seed += 1
    pipeline.run(config, other)
    leaves_other, _ = _state_leaves(other, config)
    assert any(
        not np.array_equal(np.asarray(a), np.asarray(b))
        for a, b in zip(leaves_full, leaves_other, strict=True)
    )


def test_finished_search_is_not_redone(tmp_path, caplog):
    config = load_config("quickstart", "smoke")
    pipeline.run(config, str(tmp_path))
    before = {n: (tmp_path / n).read_text() for n in ("metrics.jsonl", "decisions.jsonl")}
    pipeline.run(config, str(tmp_path))
    assert {n: (tmp_path / n).read_text() for n in before} == before


@pytest.mark.parametrize(
    "family,arg",
    [
        ("darts", "smoke,space=s2"),
        pytest.param("darts", "smoke,space=s4", marks=pytest.mark.slow),  # 3 min of compile
        ("nb201", "smoke"),
    ],
)
def test_config_families_smoke_search_and_select_on_mocked_cifar10(
    family, arg, tmp_path, no_network, per_item_mock_reads
):
    config = load_config(family, arg)
    config.data.data_dir = str(tmp_path / "tfds")
    with tfds.testing.mock_data(num_examples=64, policy=tfds.testing.MockPolicy.USE_CODE):
        pipeline.run(config, str(tmp_path / "run"))
    records = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert len(records) == config.search.epochs
    g = json.loads((tmp_path / "run" / "genotype.json").read_text())
    assert g["method"] == "pt"
    decisions = read_jsonl(tmp_path / "run" / "decisions.jsonl")
    ops = [d for d in decisions if d["kind"] == "op"]
    for d in ops:  # criterion 'acc': the op whose removal hurts most
        assert d["choice"] == d["candidates"][int(np.argmin(d["acc"]))]
    if family == "nb201":
        assert g["genotype"]["family"] == "nb201" and len(decisions) == len(ops) == 6
        return
    # DARTS: 14 op decisions then 3 node decisions per cell type (SPEC 7.5)
    for cell in ("normal", "reduce"):
        assert sorted(d["edge"] for d in ops if d["cell_type"] == cell) == list(range(14))
        nodes = [d for d in decisions if d["kind"] != "op" and d["cell_type"] == cell]
        assert len(nodes) == 3
        space = spaces.get_space(config.model.space)
        for d in nodes:  # readable next to the indices: node 2 is state 4, 'node 2 <- ...'
            assert d["node_name"] == f"node {d['node'] - 2}"
            assert d["candidate_names"] == [space.edge_name(e) for e in d["candidates"]]
            assert d["choice_names"] == [space.edge_name(e) for e in d["choice"]]
            assert all(n.startswith(d["node_name"] + " <- ") for n in d["choice_names"])
    chosen = {(d["cell_type"], d["edge"]): d["choice"] for d in ops}
    for cell in ("normal", "reduce"):  # the kept edges carry the PT-chosen ops
        for op, _ in g["genotype"][cell]:
            assert op in {chosen[(cell, e)] for e in range(14)}


@pytest.mark.parametrize(
    "override,message",
    [
        ("--config.model.space=s9", "model.space='s9' is not accepted; accepted: s1, s2"),
        ("--config.search.method=gdas", "search.method='gdas' is not accepted; accepted:"),
        ("--config.data.name=mnist", "data.name='mnist' is not accepted; accepted: digits"),
        ("--config.stages=('evaluation',)", "stages='evaluation' is not accepted"),
    ],
)
def test_bad_config_values_fail_before_work(tmp_path, override, message):
    workdir = tmp_path / "w"
    out = subprocess.run(
        [sys.executable, "-m", "nas_jax.main", "--config", "configs/quickstart.py:smoke",
         f"--workdir={workdir}", override],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr[-2000:]
    assert message in out.stderr
    assert not workdir.exists()  # nothing half-written


def test_unknown_config_arg_is_one_clear_error():
    with pytest.raises(config_lib.ConfigError, match="'spaec'; accepted: smoke, space"):
        load_config("quickstart", "spaec=s5")


@needs_archive
def test_search_on_real_cifar10_jpegs_through_image_folder(tmp_path, no_network):
    folder = tmp_path / "cifar10"
    _extract_subset(folder, {"train": 8, "test": 2})
    config = load_config("nb201", "smoke,dataset=image_folder")
    config.data.update(folder=str(folder), cache_dir=str(tmp_path / "cache"))
    pipeline.run(config, str(tmp_path / "run"))
    records = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert len(records) == config.search.epochs and np.isfinite(records[-1]["train_loss"])


def test_a_missing_dataset_is_one_line_before_anything_is_written(tmp_path, no_network):
    workdir = tmp_path / "w"
    out = subprocess.run(
        [sys.executable, "-m", "nas_jax.main", "--config", "configs/nb201.py:smoke",
         f"--workdir={workdir}", f"--config.data.data_dir={tmp_path / 'empty'}"],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr[-2000:]
    errors = [ln for ln in out.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "data.name='cifar10'" in errors[0]
    assert "not usable" in errors[0] and "Traceback" not in out.stderr
    assert not workdir.exists()
