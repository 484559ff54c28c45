"""The Python API as a notebook uses it (issue 16): a fresh interpreter, the built-in
configs from the package, stage by stage, typed results, progress visible."""

import json
import subprocess
import sys
import textwrap

import jax
from test_main import ROOT

NOTEBOOK = textwrap.dedent("""
    import json, math, sys
    import nas_jax

    w, cache = sys.argv[1], sys.argv[2]
    config = nas_jax.configs.get_config("quickstart", "smoke")
    config.xla_cache_dir = cache
    searched = nas_jax.run_search(config, w)
    selected = nas_jax.run_select(config, w)  # the search is finished: selection only
    evaluated = nas_jax.run_evaluate(config, w)  # retrains the selected cell (smoke)
    again = nas_jax.load(w)
    print(json.dumps({
        "search_method": searched.genotype_method,
        "search_epochs": [r["epoch"] for r in searched.search_metrics],
        "select_method": selected.genotype_method,
        "selected": selected.genotype.to_text(),
        "magnitude": selected.magnitude_genotype.to_text(),
        "decisions": len(selected.decisions),
        "evaluated": evaluated.evaluation["genotype_text"],
        "accuracy_finite": math.isfinite(evaluated.evaluation["test_accuracy"]),
        "load_equal": again.evaluation == evaluated.evaluation,
        "paths": sorted(again.paths),
        "stages_recorded": sorted(again.config["identity"]),
        "shown": again.show(),
    }))
""")


def test_the_api_runs_stage_by_stage_like_a_notebook(tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", NOTEBOOK, str(tmp_path / "w"), jax.config.jax_compilation_cache_dir],
        capture_output=True, text=True, cwd=tmp_path,  # not the repository: the package's configs
        env={"PYTHONPATH": ROOT, "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads(out.stdout.splitlines()[-1])
    assert r["search_method"] == "magnitude" and r["search_epochs"] == [0, 1]
    assert r["select_method"] == "pt" and r["decisions"] == 6  # NB201: one per edge
    assert r["evaluated"] == r["selected"] and r["accuracy_finite"] and r["load_equal"]
    assert {"genotype.json", "result.json", "decisions.jsonl", "cells.png"} <= set(r["paths"])
    assert r["stages_recorded"] == ["evaluate", "search", "select"]
    assert "Selection (pt): 6 decisions" in r["shown"] and "Evaluation (retrain)" in r["shown"]
    # Progress and results are visible without any logging set-up of the caller's.
    assert "Selected genotype (pt)" in out.stderr and "search step" in out.stderr
