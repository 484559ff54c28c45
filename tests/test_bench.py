"""`python -m nas_jax.bench --quick`: one subprocess per row, each printed when done, a table
and its JSON."""

import json
import os
import subprocess
import sys

import pytest

from nas_jax.bench import __main__ as bench
from nas_jax.bench import cases as cases_lib
from nas_jax.bench import report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_quick_table_and_json(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "nas_jax.bench", "--quick", "--cases", "fwd_masked,score_seq",
           "--spaces", "nb201", "--repeats", "2", "--json", str(out),
           "--depthwise", "xla"]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=ROOT, NAS_JAX_MATERIALIZE="none")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "fwd_masked" in proc.stdout and "vs ref" in proc.stdout
    assert "kernels: backend=cpu, depthwise=xla, materialize=none" in proc.stdout
    # Each row's progress line, then the final table.
    progress = [line.split()[:5] for line in proc.stdout.splitlines() if "/2 " in line]
    assert [p[0] for p in progress] == ["1/2", "2/2"]
    assert [p[3:] for p in progress] == [["nb201", "fwd_masked"], ["nb201", "score_seq"]]
    assert proc.stdout.index("2/2 ") < proc.stdout.index("nas_jax.bench on")
    table = json.loads(out.read_text())
    assert table["meta"]["backend"] == "cpu" and table["meta"]["subprocess_per_row"]
    rows = {r["case"]: r for r in table["rows"]}
    assert set(rows) == {"fwd_masked", "score_seq"}
    for r in rows.values():
        assert r["error"] == "" and r["space"] == "nb201"
        assert r["ms"] > 0 and len(r["ms_runs"]) == 2 and r["compile_s"] >= 0
        assert r["images_per_s"] > 0 and r["peak_host_mb"] > 0
        assert r["gflop"] > 0 and r["flops_source"] == "xla" and r["tflops"] > 0
        assert r["ref_ms"] is None and r["vs_ref"] is None  # quick sizes: no reference
    assert rows["fwd_masked"]["compile_how"] == "aot"
    assert rows["score_seq"]["detail"] == {"variants": 5, "score_batches": 2}
    # The resolved backend settings: the option, the environment override, the default.
    kernels = table["meta"]["kernels"]
    assert kernels["depthwise"] == "xla" and kernels["source"]["depthwise"] == "config"
    assert kernels["materialize"] == "none"
    assert kernels["source"]["materialize"] == "env NAS_JAX_MATERIALIZE"
    assert kernels["malloc"] == "reuse" and kernels["native_kernels"] == "not used"
    assert table["meta"]["env"]["NAS_JAX_MATERIALIZE"] == "none"
    assert all(r["kernels"] == kernels for r in rows.values())
    # K sequential passes read the same batches K times: flops scale with K.
    assert rows["score_seq"]["gflop"] == pytest.approx(5 * 2 * rows["fwd_masked"]["gflop"], rel=0.2)


def test_reference_only_at_reference_sizes():
    sizes = {"batch": 64, "C": 16, "nb201_cells": 5, "image": 32, "score_batches": 10}
    assert report.reference_seconds("nb201", "weight", sizes) == 1.71
    assert report.reference_seconds("nb201", "score_batched", sizes) == pytest.approx(48.1)
    assert report.reference_seconds("nb201", "weight", dict(sizes, batch=32)) is None
    assert report.reference_seconds("nb201", "weight", dict(sizes, dtype="float32")) == 1.71
    assert report.reference_seconds("nb201", "weight", dict(sizes, dtype="bfloat16")) is None
    assert report.reference_seconds("s5", "weight", sizes) is None  # no 'layers': not s5's
    row = report.Row("weight", "s5", {"batch": 64, "C": 16, "layers": 8, "image": 32}, ms=3200.0,
                     backend="cpu", device_kind="cpu")  # fmt: skip
    row.finish(None, None)
    assert row.vs_ref == pytest.approx(4.0) and row.cpu_target == 4.0
    assert row.flops_source == "reference_estimate" and row.gflop == pytest.approx(3 * 38.4)
    assert row.peak_fraction is None  # CPU: no known peak
    assert "met" in report.format_table([row])


def test_device_peaks():
    assert report.device_peak_tflops("NVIDIA H100 80GB HBM3") == 67.0
    assert report.device_peak_tflops("NVIDIA H100 PCIe") == 51.0
    assert report.device_peak_tflops("NVIDIA H200") == 67.0
    assert report.device_peak_tflops("cpu") is None


@pytest.mark.parametrize("flag", ["--cases", "--spaces"])
def test_unknown_name_is_one_clear_error(flag):
    cmd = [sys.executable, "-m", "nas_jax.bench", flag, "nope"]
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 2 and "(s) ['nope']; accepted:" in proc.stderr


def test_quick_runs_only_the_fast_rows():
    assert bench.plan(bench.parse_args([])) == [
        *((c, s) for c in cases_lib.SEARCH_CASES for s in ("nb201", "s5")),
        ("retrain", "darts_v2"),
    ]
    quick = bench.parse_args(["--quick"])
    assert bench.plan(quick) == list(bench.QUICK_ROWS)
    assert (quick.C, quick.layers, quick.nb201_cells, quick.image) == (4, 3, 1, 8)
    cases = {case for case, _ in bench.QUICK_ROWS}
    # What compiles for 15 s to minutes even at the quick sizes stays out: these steps, s5,
    # and the s2 weight step.
    slow = {"alpha2", "alpha2_fd", "search", "sdarts_rs", "sdarts_adv", "tune", "retrain"}
    assert not cases & slow and ("weight", "s2") not in bench.QUICK_ROWS
    assert {space for _, space in bench.QUICK_ROWS} == {"nb201", "s2"}
    # A training step and the full table's comparison of batched and sequential scoring.
    assert {("weight", "nb201"), ("score_batched", "nb201"), ("score_seq", "nb201")} <= set(
        bench.QUICK_ROWS
    )
    # Named cases or spaces run at the quick sizes, on the quick spaces unless named.
    named = bench.parse_args(["--quick", "--cases", "fwd_masked"])
    assert bench.plan(named) == [("fwd_masked", "nb201"), ("fwd_masked", "s2")]
    named = bench.parse_args(["--quick", "--spaces", "s5"])
    assert len(bench.plan(named)) == len(cases_lib.SEARCH_CASES) + 1 and named.C == 4


def test_rows_print_as_they_finish(monkeypatch, capsys):
    """The CLI's row loop prints a header, then each row's line before the next row starts."""
    before = []  # stdout printed since the previous row started, at the start of each row

    def fake_spawn(case, space, a, timeout):
        before.append(capsys.readouterr().out)
        row = report.Row(case, space, bench.row_sizes(a, case, space), wall_s=3.0)
        if len(before) == 2:
            row.error = "timed out after 1 s"
            return row
        row.ms, row.ms_runs, row.compile_s = 1.5, [250.0, 250.0], 2.0
        row.backend = row.device_kind = "cpu"
        return row

    monkeypatch.setattr(bench, "spawn", fake_spawn)
    rows = bench.main(["--quick"])
    before.append(capsys.readouterr().out)
    assert [(r.case, r.space) for r in rows] == list(bench.QUICK_ROWS)
    n = len(rows)
    assert before[0].splitlines()[-1] == report.progress_header()
    for i, (case, space) in enumerate(bench.QUICK_ROWS):
        lines = before[i + 1].splitlines()
        assert len(lines) == 1 or i == n - 1  # the last row's line, then the final table
        runs = "-" if i == 1 else "0.50"
        assert lines[0].split()[:5] == [f"{i + 1}/{n}", "3.0", runs, space, case]
    assert "timed out after 1 s" in before[2]
    final = before[-1][before[-1].index("nas_jax.bench on") :]
    assert report.format_table(rows) in final
