"""Golden values of whole runs: a refactor must keep every number.

Each case runs the pipeline on the bundled digits data and reduces what the run left in
its workdir (final architecture weights, a checksum of every weight and BN statistic,
genotype.json, decisions.jsonl, the retraining's final losses) to `tests/golden/
pipeline.json`. On the machine and software that recorded the file (same CPU model and
flags, jax and jaxlib), every value must match bit for bit. Elsewhere XLA:CPU and the
native kernels may round differently, so the arrays are compared to a tolerance and the
discrete results (genotypes, every decision's choice) must still be equal.

The values change only when a change is meant to change the numbers. Then re-record,
say why in the commit, and check the diff of the JSON:

  NAS_JAX_GOLDEN=record python -m pytest tests/test_golden.py -m "slow or not slow"
"""

from __future__ import annotations

import hashlib
import json
import os
import platform

import jax
import jaxlib
import numpy as np
import orbax.checkpoint as ocp
import pytest
from test_main import load_config, read_jsonl

from nas_jax import pipeline

GOLDEN = os.path.join(os.path.dirname(__file__), "golden", "pipeline.json")
RECORD = os.environ.get("NAS_JAX_GOLDEN") == "record"


def fingerprint() -> str:
    """What decides float rounding: the CPU (model and flags) and the compiler stack."""
    cpu = ""
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            lines = [ln for ln in f if ln.startswith(("model name", "flags", "Features"))]
        cpu = "".join(sorted(set(lines)))
    cpu = cpu or platform.processor() or platform.machine()
    text = "\0".join([cpu, jax.__version__, jaxlib.__version__, jax.default_backend()])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _flatten(tree, prefix=()):
    if isinstance(tree, dict):
        for k in sorted(tree):
            yield from _flatten(tree[k], (*prefix, str(k)))
    elif isinstance(tree, (list, tuple)):
        for i, v in enumerate(tree):
            yield from _flatten(v, (*prefix, str(i)))
    else:
        yield "/".join(prefix), np.asarray(tree)


def _restore(directory: str) -> dict:
    """The latest checkpoint's state as nested dicts of numpy arrays (no target tree, so
    the reading does not depend on the code under test)."""
    steps = sorted(int(s) for s in os.listdir(directory) if s.isdigit())
    path = os.path.join(directory, str(steps[-1]), "state")
    with ocp.PyTreeCheckpointer() as ckptr:
        return ckptr.restore(os.path.abspath(path))


def _digest(arrays) -> dict:
    h = hashlib.sha256()
    total = absolute = 0.0
    for name, a in arrays:
        h.update(name.encode())
        h.update(np.ascontiguousarray(a).tobytes())
        if np.issubdtype(a.dtype, np.floating):
            total += float(np.sum(a, dtype=np.float64))
            absolute += float(np.sum(np.abs(a), dtype=np.float64))
    return {"sha256": h.hexdigest(), "sum": total, "abs_sum": absolute}


def _state_values(directory: str, with_alphas: bool = True) -> dict:
    state = _restore(directory)
    out = {
        "step": int(np.asarray(state["step"])),
        "params": _digest(_flatten(state["params"])),
        "batch_stats": _digest(_flatten(state["batch_stats"])),
    }
    if with_alphas:
        alphas = state["arch"]["alphas"]
        out["alphas"] = {t: np.asarray(alphas[t]).astype(float).tolist() for t in sorted(alphas)}
        out["alphas_sha256"] = _digest(_flatten(alphas))["sha256"]
    return out


NAMES = frozenset({"edge_name", "node_name", "candidate_names", "choice_names"})


def _search_select_values(workdir: str) -> dict:
    out = {"search": _state_values(os.path.join(workdir, "checkpoints"))}
    select_dir = os.path.join(workdir, "checkpoints_select")
    if os.path.isdir(select_dir):
        out["select"] = _state_values(select_dir)
    for name in ("genotype.json", "genotype_magnitude.json"):
        with open(os.path.join(workdir, name)) as f:
            out[name] = json.load(f)
    decisions = os.path.join(workdir, "decisions.jsonl")
    records = read_jsonl(decisions) if os.path.exists(decisions) else []
    # The readable names spell out the indices (test_main checks them); golden: the numbers.
    out["decisions"] = [{k: v for k, v in r.items() if k not in NAMES} for r in records]
    return out


def _retrain_values(workdir: str) -> dict:
    with open(os.path.join(workdir, "result.json")) as f:
        result = json.load(f)
    last = read_jsonl(os.path.join(workdir, "evaluate_metrics.jsonl"))[-1]
    keep = ("test_accuracy", "test_loss", "best_test_accuracy", "params", "steps")
    return {
        "final": _state_values(os.path.join(workdir, "checkpoints_evaluate"), with_alphas=False),
        "train_loss": last["train_loss"],
        "train_acc": last["train_acc"],
        "result": {k: result[k] for k in keep},
    }


def _quickstart(arg="smoke", **overrides):
    config = load_config("quickstart", arg)
    for dotted, value in overrides.items():
        section, _, key = dotted.rpartition("__")
        (config[section] if section else config)[key] = value
    return config


def _run_search_case(config, workdir) -> dict:
    pipeline.run(config, str(workdir))
    if config.num_seeds > 1:
        return {
            f"seed_{k}": _search_select_values(os.path.join(workdir, f"seed_{k}"))
            for k in range(config.num_seeds)
        }
    return _search_select_values(str(workdir))


def _run_retrain_case(workdir) -> dict:
    out = {}
    for name, g in (
        ("darts_v2", "DARTS_V2"),
        (
            "nb201_cell",
            "|nor_conv_3x3~0|+|skip_connect~0|"
            "nor_conv_1x1~1|+|avg_pool_3x3~0|"
            "nor_conv_3x3~1|skip_connect~2|",
        ),
    ):
        config = load_config("evaluate", "dataset=digits,smoke")
        config.genotype = g
        pipeline.run(config, str(workdir / name))
        out[name] = _retrain_values(str(workdir / name))
    return out


CASES = {
    # The README's quickstart smoke run: NB201, DARTS first order, PT without tuning.
    "quickstart_smoke": lambda w: _run_search_case(_quickstart(), w),
    # DARTS family: SDARTS-RS, PT with one tuning epoch per event, node decisions.
    "s2_sdarts_rs_pt_tuned": lambda w: _run_search_case(
        _quickstart("smoke,space=s2", search__method="sdarts_rs", select__tune_epochs=1), w
    ),
    # Fixed uniform alphas (the method's own mixing weights in selection), PT-Mag, tuning.
    "fixed_uniform_pt_mag_tuned": lambda w: _run_search_case(
        _quickstart(
            "smoke,select=pt_mag",
            search__method="fixed_alpha",
            search__fixed_uniform=True,
            select__tune_epochs=2,
        ),
        w,
    ),  # fmt: skip
    # A two-seed sweep of the exact second-order method.
    "sweep2_darts_2nd": lambda w: _run_search_case(
        _quickstart(num_seeds=2, search__method="darts_2nd"), w
    ),
    # Retraining smoke runs: a DARTS cell and an NB201 cell on digits.
    "retrain_smoke": _run_retrain_case,
}
SLOW = {"s2_sdarts_rs_pt_tuned", "sweep2_darts_2nd"}


def _compare(got, want, path, exact):
    """Exact: equal JSON values. Otherwise floats to a tolerance, digests skipped, every
    other value (genotypes, choices, counts) equal."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), f"{path}: keys differ"
        for k in want:
            if not exact and k in ("sha256", "alphas_sha256"):
                continue
            _compare(got[k], want[k], f"{path}/{k}", exact)
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{path}: lengths differ"
        for i, (g, w) in enumerate(zip(got, want)):
            _compare(g, w, f"{path}[{i}]", exact)
    elif isinstance(want, float) and not exact:
        assert got == pytest.approx(want, rel=1e-3, abs=1e-4), f"{path}: {got} != {want}"
    else:
        assert got == want, f"{path}: {got!r} != {want!r}"


@pytest.mark.parametrize(
    "case", [pytest.param(c, marks=pytest.mark.slow) if c in SLOW else c for c in CASES]
)
def test_golden_values(case, tmp_path):
    got = json.loads(json.dumps(CASES[case](tmp_path)))  # what a JSON file would hold
    if RECORD:
        data = {}
        if os.path.exists(GOLDEN):
            with open(GOLDEN) as f:
                data = json.load(f)
        data.setdefault("cases", {})[case] = got
        data["fingerprint"] = fingerprint()
        data["recorded_on"] = f"{platform.processor() or platform.machine()}, jax {jax.__version__}"
        with open(GOLDEN + ".tmp", "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(GOLDEN + ".tmp", GOLDEN)
        pytest.skip("recorded")
    with open(GOLDEN) as f:
        data = json.load(f)
    exact = data["fingerprint"] == fingerprint()
    _compare(got, data["cases"][case], case, exact)
