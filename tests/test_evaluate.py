"""The evaluate stage: NAS-Bench-201 lookup, retraining (resume == uninterrupted), the
one-command pipeline, and its one-line errors."""

import json
import logging
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow_datasets as tfds
from test_main import load_config, read_jsonl

from nas_jax import checkpoint, config_lib, evaluation, genotype, pipeline, workdir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_TABLE = os.path.join(ROOT, "..", "shared", "data", "nb201_test_accuracy.csv")
ALL_SKIP = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"  # noqa: E501
CONV_CELL = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"  # noqa: E501
MISSING_CELL = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"


def write_table(path):
    """A small table with made-up numbers (all-skip gets the real benchmark's)."""
    path.write_text(
        "arch,cifar10,cifar100,ImageNet16-120\n"
        f"{ALL_SKIP},54.2967,15.6067,16.3222\n"
        f"{CONV_CELL},91.25,70.5,40.125\n"
        "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|"
        "skip_connect~2|,11.0,22.0,33.0\n"
    )
    return str(path)


def run_main(workdir, *overrides, arg=""):
    cmd = [sys.executable, "-m", "nas_jax.main", "--config", f"configs/evaluate.py{arg}",
           f"--workdir={workdir}", *overrides]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)


# --------------------------------------------------------------------------------------
# NAS-Bench-201 lookup
# --------------------------------------------------------------------------------------


def test_lookup_command_reports_all_three_datasets(tmp_path):
    table = write_table(tmp_path / "table.csv")
    out = run_main(tmp_path / "w", f"--config.genotype={ALL_SKIP}",
                   f"--config.evaluate.nb201_table={table}")  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "cifar10 54.30, cifar100 15.61, ImageNet16-120 16.32" in out.stderr
    result = json.loads((tmp_path / "w" / "result.json").read_text())
    assert result["method"] == "lookup" and result["dataset"] == "cifar10"
    assert result["nb201_test_accuracy"] == {
        "cifar10": 54.2967, "cifar100": 15.6067, "ImageNet16-120": 16.3222}  # fmt: skip
    assert result["test_accuracy"] == 54.2967
    assert result["test_error"] == pytest.approx(45.7033)
    assert result["benchmark"]["table"] == table
    assert "200 epochs" in result["benchmark"]["metric"]
    assert genotype.from_json_dict(result["genotype"]).to_text() == ALL_SKIP
    # stem 464 + ResNet blocks 14,464 + 57,600 + lastact 128 + classifier 650 (SPEC 11)
    assert result["params_M"] == pytest.approx(73_306 / 1e6)


def test_lookup_reads_the_row_of_the_cell(tmp_path):
    table = write_table(tmp_path / "table.csv")
    config = load_config("evaluate", "dataset=cifar100")
    config.genotype = CONV_CELL
    config.evaluate.nb201_table = table
    result = pipeline.run(config, str(tmp_path / "w"))
    assert result["nb201_test_accuracy"] == {
        "cifar10": 91.25, "cifar100": 70.5, "ImageNet16-120": 40.125}  # fmt: skip
    assert result["dataset"] == "cifar100" and result["test_accuracy"] == 70.5
    # The same cell given as a genotype.json (what search/select write).
    path = str(tmp_path / "genotype.json")
    genotype.save_json(genotype.get_genotype(CONV_CELL), path, method="pt")
    config.genotype = path
    assert pipeline.run(config, str(tmp_path / "w2"))["test_accuracy"] == 70.5
    # No --config.genotype: the workdir's genotype.json (as left by search/select).
    workdir = tmp_path / "w3"
    workdir.mkdir()
    genotype.save_json(genotype.get_genotype(CONV_CELL), str(workdir / "genotype.json"))
    config.genotype = ""
    assert pipeline.run(config, str(workdir))["genotype_text"] == CONV_CELL


@pytest.mark.parametrize(
    "genotype_arg,table,message",
    [
        (MISSING_CELL, "table", f"arch {MISSING_CELL} is not in the NAS-Bench-201 table"),
        ("DARTS_V2", "table", "NAS-Bench-201 lookup needs an NB201 cell"),
        (ALL_SKIP, "missing", "missing.csv' does not exist"),
        ("nonsense", "table", "genotype: Unknown genotype 'nonsense'"),
    ],
)
def test_lookup_errors_are_one_line(tmp_path, genotype_arg, table, message):
    path = write_table(tmp_path / "table.csv") if table == "table" else tmp_path / "missing.csv"
    out = run_main(
        tmp_path / "w", f"--config.genotype={genotype_arg}",
        f"--config.evaluate.nb201_table={path}", "--config.evaluate.method=lookup",
    )  # fmt: skip
    assert out.returncode == 2, out.stderr[-3000:]
    assert message in out.stderr
    assert out.stderr.strip().count("\n") == 0, out.stderr  # one line, no traceback


def test_evaluate_alone_without_genotype_writes_nothing(tmp_path):
    out = run_main(tmp_path / "w")
    assert out.returncode == 2
    assert "no genotype to evaluate" in out.stderr
    assert not (tmp_path / "w").exists()


@pytest.mark.skipif(not os.path.isfile(SHARED_TABLE), reason="../shared/data not present")
def test_lookup_on_the_shared_nb201_table(tmp_path):
    t0 = time.time()
    rows = evaluation.load_table(SHARED_TABLE)
    assert time.time() - t0 < 1.0
    assert len(rows) == 15_625
    config = load_config("evaluate")
    config.genotype = ALL_SKIP
    config.evaluate.nb201_table = SHARED_TABLE
    result = pipeline.run(config, str(tmp_path))
    accs = {k: round(v, 2) for k, v in result["nb201_test_accuracy"].items()}
    assert accs == {"cifar10": 54.30, "cifar100": 15.61, "ImageNet16-120": 16.32}
    assert max(r[0] for r in rows.values()) == pytest.approx(94.37, abs=0.005)


# --------------------------------------------------------------------------------------
# Retraining
# --------------------------------------------------------------------------------------


def test_retrain_smoke_on_digits_darts_and_nb201_cells(tmp_path, caplog):
    config = load_config("evaluate", "dataset=digits,smoke")
    config.genotype = "DARTS_V2"
    result = pipeline.run(config, str(tmp_path / "darts"))
    assert result["method"] == "retrain" and result["dataset"] == "digits"
    assert result["steps"] == 4 and result["epochs"] == 2
    records = read_jsonl(tmp_path / "darts" / "evaluate_metrics.jsonl")
    assert [r["epoch"] for r in records] == [0, 1]
    # The final epoch is the result; the best over epochs only under its own name.
    assert result["test_accuracy"] == records[-1]["test_acc"]
    assert result["best_test_accuracy"] == max(r["test_acc"] for r in records)
    assert result["test_examples"] == 16 and result["test_split_size"] == 297
    assert result["params"] == result["params_with_aux"]  # no aux head on 8x8 digits
    assert [r["drop_path_prob"] for r in records] == pytest.approx([0.0, 0.1])
    assert [r["lr"] for r in records] == pytest.approx([0.025, 0.0125])  # cosine per epoch
    assert json.loads((tmp_path / "darts" / "result.json").read_text()) == json.loads(
        json.dumps(result)
    )

    config.genotype = "DARTS_V1"  # another genotype in the same workdir: refused
    with pytest.raises(workdir.WorkdirError, match="genotype: 'DARTS_V2' -> 'DARTS_V1'"):
        pipeline.run(config, str(tmp_path / "darts"))

    config.genotype = CONV_CELL  # an NB201 cell without a table: retrained (NB201Network)
    with caplog.at_level(logging.INFO, logger="nas_jax"):
        result = pipeline.run(config, str(tmp_path / "nb201"))
    assert "No evaluate.nb201_table: retraining the NAS-Bench-201 cell on digits" in caplog.text
    assert result["method"] == "retrain" and np.isfinite(result["test_loss"])
    assert result["genotype"] == {"family": "nb201", "arch": CONV_CELL}


def _final_params(workdir, config):
    """The last retraining checkpoint, restored through the real code path."""
    import jax
    import jax.numpy as jnp

    from nas_jax.evaluation import retrain
    from nas_jax.search import optim

    g = genotype.get_genotype(config.genotype)
    model = retrain.build_network(g, config.evaluate, 10)
    tx = optim.weight_optimizer(optim.cosine_epoch_schedule(0.1, 0.0, 1, 1))  # any schedule
    abstract = retrain.create_state(model, jax.random.key(0), jnp.zeros((2, 32, 32, 3)), tx)
    ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints_evaluate"))
    state, meta = ckpt.restore(abstract)
    ckpt.close()
    return jax.tree.leaves(state), meta


def test_retrain_resume_equals_uninterrupted_on_mocked_cifar10(
    tmp_path, monkeypatch, no_network, per_item_mock_reads
):
    config = load_config("evaluate", "dataset=cifar10,smoke")
    config.genotype = "DARTS_V2"
    config.evaluate.epochs = 3
    config.data.data_dir = str(tmp_path / "tfds")
    assert config.evaluate.auxiliary and config.evaluate.drop_path_prob == 0.2
    assert config.evaluate.cutout_length == 16
    runs = {}
    with tfds.testing.mock_data(num_examples=48, policy=tfds.testing.MockPolicy.USE_CODE):
        runs["full"] = pipeline.run(config, str(tmp_path / "full"))

        real_save = checkpoint.Checkpointer.save
        calls = []

        def save_then_die(self, step, state, meta):
            real_save(self, step, state, meta)
            calls.append(step)
            if len(calls) == 2:
                raise KeyboardInterrupt("simulated kill after the second checkpoint")

        monkeypatch.setattr(checkpoint.Checkpointer, "save", save_then_die)
        with pytest.raises(KeyboardInterrupt):
            pipeline.run(config, str(tmp_path / "cut"))
        monkeypatch.setattr(checkpoint.Checkpointer, "save", real_save)
        assert not (tmp_path / "cut" / "result.json").exists()
        runs["cut"] = pipeline.run(config, str(tmp_path / "cut"))  # resumes at epoch 2

        config.seed += 1  # negative control
        runs["other"] = pipeline.run(config, str(tmp_path / "other"))
        config.seed -= 1

    full, meta_full = _final_params(str(tmp_path / "full"), config)
    cut, meta_cut = _final_params(str(tmp_path / "cut"), config)
    other, _ = _final_params(str(tmp_path / "other"), config)
    assert meta_full["epoch"] == meta_cut["epoch"] == 3
    for a, b in zip(full, cut, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert any(not np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(full, other))
    for key in ("test_accuracy", "test_loss", "best_test_accuracy", "best_epoch", "steps"):
        assert runs["full"][key] == runs["cut"][key], key
    records = read_jsonl(tmp_path / "cut" / "evaluate_metrics.jsonl")
    assert [r["epoch"] for r in records] == [0, 1, 2]  # the redone epoch is not duplicated
    strip = lambda r: {k: v for k, v in r.items() if k != "seconds"}  # noqa: E731
    full_records = read_jsonl(tmp_path / "full" / "evaluate_metrics.jsonl")
    assert [strip(r) for r in records] == [strip(r) for r in full_records]
    # The aux head exists (trained) but is not counted, as the reference counts (SPEC 11).
    assert runs["full"]["params_with_aux"] > runs["full"]["params"]
    # Rerunning a finished run does not train again.
    before = (tmp_path / "full" / "evaluate_metrics.jsonl").read_text()
    with tfds.testing.mock_data(num_examples=48, policy=tfds.testing.MockPolicy.USE_CODE):
        again = pipeline.run(config, str(tmp_path / "full"))
    assert (tmp_path / "full" / "evaluate_metrics.jsonl").read_text() == before
    assert again["test_accuracy"] == runs["full"]["test_accuracy"]


# --------------------------------------------------------------------------------------
# One command: search -> select -> evaluate
# --------------------------------------------------------------------------------------


def write_full_table(path):
    """Every NB201 cell with made-up accuracies derived from its index."""
    import itertools

    from nas_jax import spaces

    lines = ["arch,cifar10,cifar100,ImageNet16-120"]
    for i, ops in enumerate(itertools.product(spaces.NB201_OPS, repeat=6)):
        arch = genotype.NB201Genotype(ops).to_text()
        lines.append(f"{arch},{i % 97 + 0.25},{i % 89 + 0.5},{i % 83 + 0.75}")
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_nb201_search_select_evaluate_in_one_command(tmp_path, no_network, per_item_mock_reads):
    table = write_full_table(tmp_path / "table.csv")
    config = load_config("nb201", "smoke")
    config.stages = ("search", "select", "evaluate")
    config.select.update(tune_epochs=0, eval_batches=2)
    config.evaluate.nb201_table = table
    config.data.data_dir = str(tmp_path / "tfds")
    workdir = tmp_path / "run"
    with tfds.testing.mock_data(num_examples=64, policy=tfds.testing.MockPolicy.USE_CODE):
        result = pipeline.run(config, str(workdir))
    selected = json.loads((workdir / "genotype.json").read_text())
    assert len(read_jsonl(workdir / "decisions.jsonl")) == 6  # PT ran
    assert result == json.loads((workdir / "result.json").read_text())
    assert result["method"] == "lookup" and result["genotype_text"] == selected["text"]
    expected = evaluation.load_table(table)[selected["text"]]
    assert list(result["nb201_test_accuracy"].values()) == list(expected)


@pytest.mark.parametrize(
    "override,message",
    [
        ("--config.evaluate.method=best", "evaluate.method='best' is not accepted; accepted: auto"),
        ("--config.evaluate.sampler=x", "evaluate.sampler='x' is not accepted; accepted: iid"),
        ("--config.evaluate.C=7", "evaluate.C=7 must be even"),
        (
            "--config.evaluate.drop_path_prob=1.0",
            "drop_path_prob=1.0 must be a number >= 0 and < 1",
        ),
        ("--config.evaluate.auxiliary=True", "digits has 8 px: set --config.evaluate.auxiliary"),
    ],
)
def test_bad_evaluate_values_fail_before_work(tmp_path, override, message):
    out = run_main(tmp_path / "w", "--config.genotype=DARTS_V2", override, arg=":dataset=digits")
    assert out.returncode == 2, out.stderr[-2000:]
    assert message in out.stderr
    assert not (tmp_path / "w").exists()


def test_search_stage_conflicts_are_rejected_before_work():
    config = load_config("quickstart", "smoke")
    config.stages = ("search", "evaluate")
    config.genotype = "DARTS_V2"
    with pytest.raises(config_lib.ConfigError, match="is for stages=\\('evaluate',\\) only"):
        pipeline.validate(config)
    config = load_config("darts", "smoke,space=s2")
    config.stages = ("search", "evaluate")
    config.evaluate.update(method="lookup", nb201_table=__file__)
    with pytest.raises(config_lib.ConfigError, match="'lookup' needs NB201 cells; model.space"):
        pipeline.validate(config)
    config.evaluate.nb201_table = ""
    with pytest.raises(config_lib.ConfigError, match="needs --config.evaluate.nb201_table"):
        pipeline.validate(config)


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100", "svhn_cropped", "imagenet"])
def test_protocol_configs_build_with_reference_sizes(dataset):
    import jax
    import jax.numpy as jnp

    from nas_jax.evaluation import retrain

    config = load_config("evaluate", f"dataset={dataset}")
    ev = config.evaluate
    expected = {  # SPEC 11: DARTS_V2 parameters without the aux head
        "cifar10": (36, 20, 10, 3_349_342),
        "cifar100": (16, 8, 100, 269_236),
        "svhn_cropped": (16, 8, 10, 246_106),
        "imagenet": (48, 14, 1000, 4_718_752),
    }[dataset]
    assert (ev.C, ev.layers) == expected[:2]
    model = retrain.build_network(genotype.get_genotype("DARTS_V2"), ev, expected[2])
    size = 224 if dataset == "imagenet" else 32
    shapes = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3)), train=True)
    )
    assert retrain.count_params(shapes["params"])[0] == expected[3]
    if dataset == "imagenet":  # SPEC 8.3; running it stops with one clear line
        assert (ev.lr, ev.batch_size, ev.epochs, ev.label_smoothing) == (0.1, 128, 250, 0.1)
        config.genotype = "DARTS_V2"
        with pytest.raises(config_lib.ConfigError, match="input pipeline, which is not impl"):
            pipeline.validate(config)
    else:
        assert (ev.epochs, ev.batch_size, ev.lr, ev.auxiliary_weight) == (600, 96, 0.025, 0.4)
        pipeline.validate(config)
