"""The evaluate stage: NAS-Bench-201 lookup, retraining (resume == uninterrupted), the
one-command pipeline, and its one-line errors."""

import json
import os
import subprocess
import sys
import time

import pytest
from test_main import load_config

from nas_jax import evaluation, genotype, pipeline

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
