"""`python -m nas_jax.bench --quick`: one subprocess per row, a table and its JSON."""

import json
import os
import subprocess
import sys

import pytest

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
