r"""Benchmark: one table of step times for the supernets, scoring and retraining.

  python -m nas_jax.bench                          # everything at the issue's sizes
  python -m nas_jax.bench --cases weight,score_batched --spaces s5 --json /tmp/b.json
  python -m nas_jax.bench --quick                  # 4 fast rows at tiny sizes, < 2 minutes

Rows: for each case (`--cases`, see `nas_jax.bench.cases`) and space (`--spaces`):
median milliseconds per unit of work (a step; a whole scoring pass over
`--score-batches` batches), images/s (distinct images read per unit of work / time),
compile time (trace + lower + compile, timed ahead of the first run; for the scoring
cases the first call minus the median), peak memory (device allocator's peak where
the backend reports one, else the process's peak RSS, compile included), XLA's flop
count per unit of work and the achieved TFLOP/s, the fraction of the device's dense
float32 peak where known, and the PyTorch reference's time with the speed-up over it
where the sizes match the reference's (batch 64, C=16, 32x32; NB201 N=5, s5 L=8).

The backend settings (`--depthwise`, `--materialize`, `--malloc`; 'auto' takes the
$NAS_JAX_* override, else the backend's default) are resolved by `nas_jax.kernels.configure`
in each row's process; every row and the JSON's meta record what it resolved.

Each row runs in a fresh Python process (peak memory and compile caches per case;
`--in-process` runs them all here instead, for debugging) and prints its line as soon as
it is done, after its place (row i/N), its whole wall time and its timed runs' total; the
table of all rows follows at the end. Full sizes on a 2-core CPU take most of an hour (the
s5 supernet's compile alone takes minutes).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import jax  # only its version here: the backend starts in the rows' processes

from nas_jax import kernels, precision, spaces
from nas_jax.bench import cases as cases_lib
from nas_jax.bench import report

FULL = dict(batch=64, C=16, layers=8, nb201_cells=5, image=32, score_batches=10, retrain_C=36,
            retrain_layers=20, retrain_batch=96, retrain_aux=True, repeats=10)  # fmt: skip
QUICK = dict(batch=8, C=4, layers=3, nb201_cells=1, image=8, score_batches=2, retrain_C=8,
             retrain_layers=3, retrain_batch=8, retrain_aux=False, repeats=3)  # fmt: skip
SPACES = ("nb201", "s5")
# `--quick` alone, cold in under 2 minutes on 2 CPU cores: the NB201 weight step, scoring one
# edge's K=5 op removals batched vs sequentially on NB201, and the batched scoring on s2 (DARTS's
# cell with 2 ops, through the native kernels under vmap). At QUICK sizes each row costs 10 s
# or more (a process, the state, the compile): fwd_masked is left out as the forward that the
# scoring runs, every other step compiles for 16 s (retrain) to over 2 minutes (alpha2), s2's
# weight step for 25 s, and any s5 row for longer than its s2 twin (weight: 3.5 minutes).
QUICK_ROWS = (("weight", "nb201"), ("score_batched", "nb201"), ("score_seq", "nb201"),
              ("score_batched", "s2"))  # fmt: skip
QUICK_SPACES = ("nb201", "s2")  # `--quick --cases ...`


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m nas_jax.bench",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--cases", help=f"comma list or 'all' (the default): {','.join(cases_lib.CASES)}"
    )
    p.add_argument("--spaces", help=f"comma list of search spaces (default {','.join(SPACES)}; "
                   f"with --quick {','.join(QUICK_SPACES)})")  # fmt: skip
    quick_rows = ", ".join(f"{space} {case}" for case, space in QUICK_ROWS)
    p.add_argument("--quick", action="store_true", help=f"tiny sizes {json.dumps(QUICK)}; "
                   f"without --cases and --spaces only the rows {quick_rows}")  # fmt: skip
    for name, default in FULL.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(default, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        else:
            p.add_argument(flag, type=int, default=None, help=f"default {default}")
    p.add_argument("--dtype", default="float32", choices=precision.DTYPES,
                   help="compute dtype (config.compute_dtype); params stay float32")  # fmt: skip
    for name, accepted in kernels.settings.ACCEPTED.items():
        p.add_argument(f"--{name}", default="auto", choices=("auto", *accepted),
                       help="backend setting (nas_jax.kernels.settings)")  # fmt: skip
    p.add_argument("--max-timed-seconds", type=float, default=60.0,
                   help="stop repeating once 3 runs took this long")  # fmt: skip
    p.add_argument("--case-timeout", type=float, default=0, help="seconds per row; 0 = none")
    p.add_argument("--total-budget", type=float, default=0,
                   help="seconds for the whole table, later rows skipped; 0 = none")  # fmt: skip
    p.add_argument("--in-process", action="store_true", help="no subprocess per row")
    p.add_argument("--json", default="", help="also write the table here as JSON")
    p.add_argument("--child", default="", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    base = QUICK if a.quick else FULL
    for name, default in base.items():
        if getattr(a, name) is None:
            setattr(a, name, default)
    a.quick_rows = a.quick and a.cases is None and a.spaces is None
    if a.cases is None:
        a.cases = "all"
    if a.spaces is None:
        a.spaces = ",".join(QUICK_SPACES if a.quick else SPACES)
    names = cases_lib.CASES if a.cases == "all" else tuple(filter(None, a.cases.split(",")))
    bad = [c for c in names if c not in cases_lib.CASES]
    if bad:
        p.error(f"unknown case(s) {bad}; accepted: {', '.join(cases_lib.CASES)}")
    a.case_list, a.space_list = names, tuple(filter(None, a.spaces.split(",")))
    bad = [s for s in a.space_list if s not in spaces.SPACES]
    if bad:
        p.error(f"unknown space(s) {bad}; accepted: {', '.join(spaces.SPACES)}")
    return a


def row_sizes(a, case: str, space: str) -> dict:
    if case == "retrain":
        return {"batch": a.retrain_batch, "C": a.retrain_C, "layers": a.retrain_layers,
                "image": a.image, "auxiliary": a.retrain_aux, "dtype": a.dtype}  # fmt: skip
    sizes = {"batch": a.batch, "C": a.C, "image": a.image, "dtype": a.dtype}
    sizes.update({"nb201_cells": a.nb201_cells} if space == "nb201" else {"layers": a.layers})
    if case.startswith("score_"):
        sizes["score_batches"] = a.score_batches
    return sizes


def plan(a) -> list[tuple[str, str]]:
    """(case, space) rows, case by case so that a budget cuts the least important last."""
    if a.quick_rows:
        return list(QUICK_ROWS)
    rows = []
    for case in a.case_list:
        rows += [(case, "darts_v2")] if case == "retrain" else [(case, s) for s in a.space_list]
    return rows


def kernel_settings(a) -> dict:
    """The `kernels` config section that the options ask for."""
    return {name: getattr(a, name) for name in kernels.settings.ACCEPTED}


def measure(case: str, space: str, a) -> report.Row:
    """Builds, compiles and times one row in this process."""
    row = report.Row(case, space, row_sizes(a, case, space))
    t_start = time.perf_counter()
    row.kernels = kernels.configure(kernel_settings(a))  # first: the allocator, then the backend
    sizes = cases_lib.Sizes(
        space=space if case != "retrain" else "s5", batch=a.batch, C=a.C, layers=a.layers,
        nb201_cells=a.nb201_cells, image=a.image, score_batches=a.score_batches,
        retrain_C=a.retrain_C, retrain_layers=a.retrain_layers, retrain_batch=a.retrain_batch,
        retrain_aux=a.retrain_aux, dtype=a.dtype,
    )  # fmt: skip
    prep = cases_lib.prepare(case, sizes)
    t0 = time.perf_counter()
    prep.step()
    first_run = time.perf_counter() - t0
    times: list[float] = []
    while len(times) < a.repeats and (len(times) < 3 or sum(times) < a.max_timed_seconds):
        t0 = time.perf_counter()
        prep.step()
        times.append(time.perf_counter() - t0)
    median = statistics.median(times) if times else first_run
    row.ms, row.ms_min = 1e3 * median, 1e3 * min(times or [first_run])
    row.ms_runs = [round(1e3 * t, 3) for t in times]
    if prep.compile_s is not None:
        row.compile_s, row.compile_how = prep.compile_s, "aot"
        row.first_call_s = prep.compile_s + first_run
    else:
        row.first_call_s, row.compile_how = first_run, "first_minus_median"
        row.compile_s = max(first_run - median, 0.0)
    row.images, row.detail = prep.images, prep.detail
    dev = jax.devices()[0]
    row.backend, row.device_kind = jax.default_backend(), dev.device_kind
    stats = dev.memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        row.peak_device_mb = stats["peak_bytes_in_use"] / 2**20
    row.peak_host_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    row.finish(prep.flops, prep.detail.get("variants"))
    row.wall_s = time.perf_counter() - t_start
    return row


def _child_main(spec: str) -> None:
    job = json.loads(spec)
    a = argparse.Namespace(**job["args"])
    row = measure(job["case"], job["space"], a)
    with open(job["out"], "w") as f:
        json.dump(dataclasses.asdict(row), f)


def spawn(case: str, space: str, a, timeout: float | None) -> report.Row:
    """Runs `measure` in a fresh interpreter and reads its row back."""
    keys = list(FULL) + ["max_timed_seconds", "dtype", *kernels.settings.ACCEPTED]
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "row.json")
        job = {"case": case, "space": space, "out": out,
               "args": {k: getattr(a, k) for k in keys}}  # fmt: skip
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH", "")]))
        cmd = [sys.executable, "-m", "nas_jax.bench", "--child", json.dumps(job)]
        row = report.Row(case, space, row_sizes(a, case, space))
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            row.error, row.wall_s = f"timed out after {timeout:.0f} s", time.perf_counter() - t0
            return row
        if proc.returncode != 0 or not os.path.exists(out):
            tail = [line for line in proc.stderr.splitlines() if line.strip()][-20:]
            row.error = f"failed (exit {proc.returncode}): {' '.join(tail[-1:])[:300]}"
            row.detail = {"stderr_tail": tail}
            row.wall_s = time.perf_counter() - t0
            return row
        with open(out) as f:
            return report.Row(**json.load(f))


def main(argv=None) -> list[report.Row]:
    a = parse_args(argv)
    if a.child:
        _child_main(a.child)
        return []
    rows, todo = [], plan(a)
    where = "in this process" if a.in_process else "each in a fresh process"
    print(f"{len(todo)} rows at {'--quick' if a.quick else 'full'} sizes, {where}; wall s: the "
          "row's whole time, runs s: its timed runs (compile s apart)", flush=True)  # fmt: skip
    print(report.progress_header(), flush=True)
    t_start = time.perf_counter()
    for i, (case, space) in enumerate(todo):
        elapsed = time.perf_counter() - t_start
        left = a.total_budget - elapsed if a.total_budget else None
        if left is not None and left < 5:
            row = report.Row(case, space, row_sizes(a, case, space))
            row.error = "skipped: --total-budget spent"
        elif a.in_process:
            row = measure(case, space, a)
        else:
            limits = [t for t in (a.case_timeout, left) if t]
            row = spawn(case, space, a, min(limits) if limits else None)
        rows.append(row)
        print(report.progress_line(row, i + 1, len(todo)), flush=True)
    done = next((r for r in rows if not r.error), None)
    meta = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "backend": done.backend if done else "", "device_kind": done.device_kind if done else "",
        "host_cpus": os.cpu_count(), "argv": sys.argv[1:] if argv is None else list(argv),
        "subprocess_per_row": not a.in_process, "repeats": a.repeats,
        "reference": "PyTorch darts-pt, 2 CPU threads, batch 64, 32x32, median of 10",
    }  # fmt: skip
    meta["jax"] = jax.__version__
    # The environment the rows' processes inherit, and the backend settings they resolved
    # (the first finished row's; each row has its own).
    meta["env"] = {
        k: v for k, v in os.environ.items() if k.startswith("NAS_JAX_") or k == "XLA_FLAGS"
    }
    meta["kernels"] = done.kernels if done else {"requested": kernel_settings(a)}
    print(f"\nnas_jax.bench on {meta['backend']} ({meta['device_kind']}), jax {meta.get('jax')}, "
          f"{meta['date']}; median of up to {a.repeats} runs")  # fmt: skip
    print("kernels: " + ", ".join(f"{k}={v}" for k, v in meta["kernels"].items() if k != "source"))
    print(report.format_table(rows))
    print(report.NOTES)
    if a.json:
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json, "w") as f:
            json.dump({"meta": meta, "rows": [dataclasses.asdict(r) for r in rows]}, f, indent=1)
    return rows


if __name__ == "__main__":
    # Timeouts and budget skips are expected; a row that raised is not.
    sys.exit(int(any(r.error.startswith("failed") for r in main())))
