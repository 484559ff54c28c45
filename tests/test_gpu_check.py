"""experiments/gpu_check.sh --dry-run: the GPU check's every step on the CPU, tiny sizes."""

import json
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "experiments", "gpu_check.sh")


@pytest.mark.slow  # 2 minutes on CPU; run `-m slow` before spending device time on the script
@pytest.mark.skipif(not (shutil.which("bash") and shutil.which("timeout")), reason="no bash")
def test_dry_run(tmp_path):
    res, out = tmp_path / "results", tmp_path / "out"
    out.mkdir()
    env = dict(os.environ, PYTHON=sys.executable, GPU_CHECK_RESULTS=str(res),
               GPU_CHECK_WORK=str(tmp_path / "work"), OUT=str(out))  # fmt: skip
    env.pop("PYTHONPATH", None)  # the script puts the checkout on it itself
    proc = subprocess.run(["bash", SCRIPT, "--dry-run"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    summary = (res / "summary.txt").read_text()
    for name in ("env", "imports", "data", "tests", "bench", "pipeline"):
        assert any(line.split()[:2] == [name, "ok"] for line in summary.splitlines()), summary
    bench = json.loads((res / "bench.json").read_text())
    assert [(r["case"], r["error"]) for r in bench["rows"]] == [("fwd_masked", "")]
    result = json.loads((res / "pipeline" / "result.json").read_text())
    assert result["method"] == "lookup" and 0 < result["test_accuracy"] < 100
    assert "lookup:" in summary and "failed steps: 0" in summary
    # What the device tool brings back: at most 8 plain files, one of them the tarball.
    files = sorted(os.listdir(out))
    assert "results.tar.gz" in files and "summary.txt" in files and len(files) <= 8


def test_unknown_argument():
    proc = subprocess.run(["bash", SCRIPT, "--nope"], capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown argument" in proc.stderr
