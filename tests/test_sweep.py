"""Batched seed sweeps (config.num_seeds): per-seed artifacts and summary, member k ==
the single run of seed + k, resume == uninterrupted, bad values rejected."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds
from tensorflow_datasets.core.data_sources import array_record
from test_evaluate import ALL_SKIP, write_full_table
from test_main import ROOT, _state_leaves, load_config, read_jsonl

from nas_jax import checkpoint, config_lib, pipeline

K = 4


@pytest.fixture(scope="module")
def mocked_cifar10(tmp_path_factory):
    """conftest's per-item mock reads, held for the module (the sweep is shared)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(
            array_record.ArrayRecordDataSource,
            "__getitems__",
            lambda self, keys: [self[k] for k in keys],
        )
        with tfds.testing.mock_data(num_examples=64, policy=tfds.testing.MockPolicy.USE_CODE):
            yield str(tmp_path_factory.mktemp("tfds"))


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    return write_full_table(tmp_path_factory.mktemp("nb201") / "table.csv")


def nb201_smoke(data_dir, table, num_seeds=1):
    config = load_config("nb201", "smoke")
    config.stages = ("search", "select", "evaluate")
    config.evaluate.nb201_table = table
    config.data.data_dir = data_dir
    config.num_seeds = num_seeds
    return config


@pytest.fixture(scope="module")
def sweep(mocked_cifar10, table, tmp_path_factory):
    """One K=4 sweep of the NB201 smoke config: search, PT selection, lookup."""
    config = nb201_smoke(mocked_cifar10, table, num_seeds=K)
    workdir = tmp_path_factory.mktemp("sweep") / "run"
    summary = pipeline.run(config, str(workdir))
    return config, workdir, summary


def test_nb201_smoke_sweep_writes_one_run_per_seed_and_a_summary(sweep):
    config, workdir, summary = sweep
    assert summary == json.loads((workdir / "summary.json").read_text())
    assert summary["num_seeds"] == K and summary["seeds"] == [0, 1, 2, 3]
    assert json.loads((workdir / "config.json").read_text())["num_seeds"] == K
    for k, run in enumerate(summary["runs"]):
        d = workdir / f"seed_{k}"
        for name in ("config.json", "metrics.jsonl", "genotype.json", "genotype_magnitude.json",
                     "decisions.jsonl", "result.json", "cells.dot"):  # fmt: skip
            assert (d / name).is_file(), (k, name)
        assert (d / "checkpoints").is_dir() and (d / "checkpoints_select").is_dir()
        cfg = json.loads((d / "config.json").read_text())
        assert (cfg["seed"], cfg["num_seeds"]) == (config.seed + k, 1)  # a single run's config
        records = read_jsonl(d / "metrics.jsonl")
        assert [r["epoch"] for r in records] == [0, 1]
        assert len(read_jsonl(d / "decisions.jsonl")) == 6  # PT decided every edge
        g = json.loads((d / "genotype.json").read_text())
        result = json.loads((d / "result.json").read_text())
        assert run["workdir"] == f"seed_{k}" and run["genotype"] == g["text"]
        assert run["genotype"] == result["genotype_text"]
        assert run["search"]["valid_eval_acc"] == records[-1]["valid_eval_acc"]
        assert run["evaluate"]["test_accuracy"] == result["test_accuracy"]
    for key in ("search.valid_eval_acc", "search.train_loss", "evaluate.test_accuracy",
                "evaluate.nb201_test_accuracy.cifar100"):  # fmt: skip
        section, _, name = key.partition(".")
        values = [run[section][name] for run in summary["runs"]]
        assert summary["mean"][key] == pytest.approx(np.mean(values))
        assert summary["std"][key] == pytest.approx(np.std(values, ddof=1))
    assert "search.epoch" not in summary["mean"]  # bookkeeping is not a result
    assert sum(summary["genotype_counts"].values()) == K
    # Seeds differ (negative control of the equivalence below): not K copies of one run.
    assert len({r["search"]["train_loss"] for r in summary["runs"]}) == K


def test_sweep_member_equals_the_single_run_of_its_seed(sweep, mocked_cifar10, table, tmp_path):
    config, workdir, _ = sweep
    k = 2
    single = nb201_smoke(mocked_cifar10, table)
    single.seed = config.seed + k
    pipeline.run(single, str(tmp_path))
    member = workdir / f"seed_{k}"
    for name in ("genotype.json", "genotype_magnitude.json"):
        assert json.loads((member / name).read_text()) == json.loads((tmp_path / name).read_text())
    choices = lambda d: [(r["edge"], r["choice"]) for r in read_jsonl(d / "decisions.jsonl")]
    assert choices(member) == choices(tmp_path)
    for a, b in zip(read_jsonl(member / "metrics.jsonl"), read_jsonl(tmp_path / "metrics.jsonl")):
        assert a["genotype"] == b["genotype"]
        np.testing.assert_allclose(a["train_loss"], b["train_loss"], rtol=1e-5)
        np.testing.assert_allclose(a["valid_eval_loss"], b["valid_eval_loss"], rtol=1e-5)
    # The vmapped step is another XLA program: equal to float rounding. Max measured:
    # 3e-7 in the weights. The alphas (~1e-2, and their Adam moments: the (6, 5) leaves)
    # differ by up to 2e-5: Adam divides tiny alpha gradients by their running RMS, so
    # rounding differences grow to a few % of one 3e-4 step over the run.
    leaves_member, meta_member = _state_leaves(str(member), single)
    leaves_single, meta_single = _state_leaves(str(tmp_path), single)
    assert meta_member == meta_single
    alpha_shape = (6, 5)
    for a, b in zip(leaves_member, leaves_single, strict=True):
        atol = 1e-4 if np.shape(a) == alpha_shape else 1e-6
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=atol)
    # Negative control: another member is not within that tolerance of this seed's run.
    leaves_other, _ = _state_leaves(str(workdir / "seed_0"), single)
    assert any(
        not np.allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
        for a, b in zip(leaves_other, leaves_single, strict=True)
    )


def test_evaluate_alone_on_a_sweep_reads_each_seeds_genotype(sweep, tmp_path):
    config, workdir, summary = sweep
    copy = tmp_path / "run"
    shutil.copytree(workdir, copy)
    for k in range(K):
        os.remove(copy / f"seed_{k}" / "result.json")
    config = config.copy_and_resolve_references()
    config.stages = ("evaluate",)
    assert pipeline.run(config, str(copy)) == summary


def test_evaluate_alone_with_a_given_genotype_evaluates_it_once_per_seed(table, tmp_path):
    config = load_config("evaluate")
    config.update_from_flattened_dict(
        {"genotype": ALL_SKIP, "evaluate.nb201_table": table, "num_seeds": 2}
    )
    summary = pipeline.run(config, str(tmp_path))
    assert [r["genotype"] for r in summary["runs"]] == [ALL_SKIP] * 2
    for k in range(2):
        result = json.loads((tmp_path / f"seed_{k}" / "result.json").read_text())
        assert result["genotype_text"] == ALL_SKIP
    assert summary["std"]["evaluate.test_accuracy"] == 0.0  # a lookup does not depend on seed
    assert summary["genotype_counts"] == {ALL_SKIP: 2}


@pytest.mark.slow  # two more K=4 sweeps: ~100 s on 2 cores
def test_interrupted_sweep_resumes_to_the_uninterrupted_result(
    sweep, mocked_cifar10, table, tmp_path, monkeypatch
):
    _, full, _ = sweep
    config = nb201_smoke(mocked_cifar10, table, num_seeds=K)
    config.stages = ("search",)
    real_save = checkpoint.Checkpointer.save
    calls = []

    def save_then_die(self, step, state, meta):
        real_save(self, step, state, meta)
        calls.append(step)
        if len(calls) == K + 2:  # epoch 2 saved for seeds 0 and 1 only
            raise KeyboardInterrupt("simulated kill between two seeds' checkpoints")

    monkeypatch.setattr(checkpoint.Checkpointer, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run(config, str(tmp_path))
    monkeypatch.setattr(checkpoint.Checkpointer, "save", real_save)
    steps = lambda k: sorted(int(s) for s in os.listdir(tmp_path / f"seed_{k}" / "checkpoints"))
    assert steps(0) == [2, 4] and steps(3) == [2]
    pipeline.run(config, str(tmp_path))  # the same command again: resumes at epoch 1
    for k in range(K):
        assert steps(k) == [2, 4]
        leaves_full, meta_full = _state_leaves(str(full / f"seed_{k}"), config)
        leaves_cut, meta_cut = _state_leaves(str(tmp_path / f"seed_{k}"), config)
        assert meta_full == meta_cut == {"epoch": 2, "stage": "search"}
        for a, b in zip(leaves_full, leaves_cut, strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        epochs = [r["epoch"] for r in read_jsonl(tmp_path / f"seed_{k}" / "metrics.jsonl")]
        assert epochs == [0, 1]  # the redone epoch is not duplicated


@pytest.mark.parametrize("value", [0, -1])
def test_bad_num_seeds_is_rejected_before_work(value, tmp_path):
    config = load_config("nb201", "smoke")
    config.num_seeds = value
    with pytest.raises(config_lib.ConfigError, match=f"num_seeds={value} must be an integer >= 1"):
        pipeline.run(config, str(tmp_path / "w"))
    assert not (tmp_path / "w").exists()


def test_bad_num_seeds_on_the_command_line_is_one_line(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "nas_jax.main", "--config", "configs/quickstart.py:smoke",
         f"--workdir={tmp_path / 'w'}", "--config.num_seeds=0"],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr[-2000:]
    assert "error: num_seeds=0 must be an integer >= 1" in out.stderr
    assert not (tmp_path / "w").exists()
