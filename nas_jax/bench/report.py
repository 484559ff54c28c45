"""Reference numbers, device peaks, and the benchmark table.

The PyTorch reference (ruocwang/darts-pt) was timed on 2 CPU threads at batch 64,
32x32 images, median of 10 (issue 6). Its numbers apply only at the same sizes; a row
at other sizes gets no reference and no speed-up.
"""

from __future__ import annotations

import dataclasses
import math

# The sizes at which the reference was timed, per space.
REFERENCE_SIZES = {
    "nb201": {"batch": 64, "C": 16, "nb201_cells": 5, "image": 32, "dtype": "float32"},
    "s5": {"batch": 64, "C": 16, "layers": 8, "image": 32, "dtype": "float32"},
}
# Seconds per unit of work; scoring is per batch (one edge's K removals on one batch).
REFERENCE_S = {
    ("nb201", "weight"): 1.71,
    ("nb201", "alpha1"): 1.78,
    ("nb201", "fwd_masked"): 1.08,
    ("nb201", "score_batched"): 4.81,
    ("nb201", "score_seq"): 4.81,
    ("s5", "weight"): 12.8,
    ("s5", "alpha1"): 13.2,
    ("s5", "fwd_masked"): 2.92,
    ("s5", "score_batched"): 20.0,
    ("s5", "score_seq"): 20.0,
}
REFERENCE_FWD_GFLOP = {"nb201": 31.2, "s5": 38.4}  # one forward at the reference sizes
# Issue 6's CPU targets: the speed-up over the reference a row must reach.
CPU_TARGETS = {("nb201", "weight"): 2.0, ("s5", "weight"): 4.0,
               ("nb201", "score_batched"): 3.0, ("s5", "score_batched"): 3.0}  # fmt: skip
# Forwards per unit of work, to estimate flops from the reference forward when XLA gives
# none (a backward ~ 2 forwards).
_FWD_EQUIV = {"weight": 3, "alpha1": 3, "fwd_masked": 1, "search": 6, "sdarts_rs": 6,
              "tune": 6}  # fmt: skip

# Dense peak TFLOP/s by device kind (first match wins): float32 without tensor cores,
# and bf16 tensor cores. JAX's default float32 matmul/conv precision on these GPUs may
# use TF32 tensor cores, so a float32 fraction above 1 is possible.
DEVICE_PEAKS = (
    ("H100 PCIe", {"float32": 51.0, "bfloat16": 756.0}),
    ("H100", {"float32": 67.0, "bfloat16": 989.0}),
    ("H200", {"float32": 67.0, "bfloat16": 989.0}),
    ("A100", {"float32": 19.5, "bfloat16": 312.0}),
)


def device_peak_tflops(device_kind: str, dtype: str = "float32") -> float | None:
    for name, peaks in DEVICE_PEAKS:
        if name.lower() in device_kind.lower():
            return peaks.get(dtype)
    return None


def reference_seconds(space: str, case: str, sizes: dict) -> float | None:
    """The reference's seconds for the same unit of work, or None (no number, or other
    sizes)."""
    ref = REFERENCE_S.get((space, case))
    want = REFERENCE_SIZES.get(space, {})
    sizes = {"dtype": "float32", **sizes}  # rows without a dtype computed in float32
    if ref is None or any(sizes.get(k) != v for k, v in want.items()):
        return None
    if case.startswith("score_"):
        return ref * sizes["score_batches"]
    return ref


def reference_flops(space: str, case: str, sizes: dict, variants: int | None) -> float | None:
    if reference_seconds(space, "weight", sizes) is None:  # sizes differ from the reference
        return None
    fwd = REFERENCE_FWD_GFLOP[space] * 1e9
    if case.startswith("score_") and variants:
        return fwd * variants * sizes["score_batches"]
    return fwd * _FWD_EQUIV[case] if case in _FWD_EQUIV else None


@dataclasses.dataclass
class Row:
    case: str
    space: str
    sizes: dict
    ms: float | None = None
    ms_min: float | None = None
    ms_runs: list = dataclasses.field(default_factory=list)
    first_call_s: float | None = None
    compile_s: float | None = None
    compile_how: str = ""  # 'aot' (lower+compile timed) or 'first_minus_median'
    images: int | None = None
    images_per_s: float | None = None
    gflop: float | None = None
    flops_source: str = ""  # 'xla' or 'reference_estimate'
    tflops: float | None = None
    peak_tflops: float | None = None
    peak_fraction: float | None = None
    peak_host_mb: float | None = None
    peak_device_mb: float | None = None
    ref_ms: float | None = None
    vs_ref: float | None = None
    cpu_target: float | None = None
    backend: str = ""
    device_kind: str = ""
    kernels: dict = dataclasses.field(default_factory=dict)  # nas_jax.kernels.configure's record
    wall_s: float | None = None
    detail: dict = dataclasses.field(default_factory=dict)
    error: str = ""

    def finish(self, flops: float | None, variants: int | None) -> None:
        """Fills the derived columns from ms, images and flops."""
        if self.ms is None:
            return
        sec = self.ms / 1e3
        if self.images:
            self.images_per_s = self.images / sec
        source = "xla"
        if flops is None:
            flops, source = reference_flops(self.space, self.case, self.sizes, variants), ""
            source = "reference_estimate" if flops else ""
        if flops:
            self.gflop, self.flops_source = flops / 1e9, source
            self.tflops = flops / sec / 1e12
            self.peak_tflops = device_peak_tflops(self.device_kind)
            if self.peak_tflops:
                self.peak_fraction = self.tflops / self.peak_tflops
        ref = reference_seconds(self.space, self.case, self.sizes)
        if ref is not None:
            self.ref_ms, self.vs_ref = ref * 1e3, ref / sec
            self.cpu_target = CPU_TARGETS.get((self.space, self.case))


NOTES = """\
ms/step: median milliseconds per unit of work (score_*: the whole pass over the batches).
vs ref = reference seconds / these; the reference is PyTorch on 2 CPU threads (scoring: its
one-batch time x batches). GFLOP per unit of work from XLA's cost analysis (plus the native
CPU kernels' multiply-adds, from their shapes: XLA cannot see into them); '~' = estimated
from the reference's forward (NB201 31.2, s5 38.4 GFLOP at its sizes: compare fwd_masked).
% peak: of the device's dense float32 peak, where known."""


def _fmt(value, spec: str, width: int) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return " " * (width - 1) + "-"
    return format(value, spec).rjust(width)


def table_header() -> str:
    return (
        f"{'space':<9}{'case':<14}{'ms/step':>10}{'img/s':>9}{'compile s':>10}{'peak MB':>9}"
        f"{'GFLOP':>9} {'TFLOP/s':>9}{'% peak':>8}{'ref ms':>9}{'vs ref':>8}  CPU target"
    )


def format_row(r: Row) -> str:
    if r.error:
        return f"{r.space:<9}{r.case:<14}  {r.error}"
    mem = r.peak_device_mb if r.peak_device_mb is not None else r.peak_host_mb
    pct = 100 * r.peak_fraction if r.peak_fraction is not None else None
    target = ""
    if r.cpu_target:
        met = "met" if r.vs_ref >= r.cpu_target else "not met"
        target = f">= {r.cpu_target:g}x {met}" + ("" if r.backend == "cpu" else " (not CPU)")
    gflop = _fmt(r.gflop, ".4g", 9) + ("~" if r.flops_source == "reference_estimate" else " ")
    return (
        f"{r.space:<9}{r.case:<14}{_fmt(r.ms, '.1f', 10)}{_fmt(r.images_per_s, '.0f', 9)}"
        f"{_fmt(r.compile_s, '.1f', 10)}{_fmt(mem, '.0f', 9)}{gflop}"
        f"{_fmt(r.tflops, '.3g', 9)}{_fmt(pct, '.1f', 8)}{_fmt(r.ref_ms, '.0f', 9)}"
        f"{_fmt(r.vs_ref, '.2f', 8)}  {target}"
    )


def format_table(rows: list[Row]) -> str:
    return "\n".join([table_header(), *map(format_row, rows)])


# While the rows run, each line leads with its place and its time: the row's whole wall
# time (process start, build, compile, the runs) and the timed runs' sum, the steady state.
_PROGRESS = f"{'row':>7}{'wall s':>8}{'runs s':>8}  "


def progress_header() -> str:
    return _PROGRESS + table_header()


def progress_line(r: Row, i: int, n: int) -> str:
    runs = sum(r.ms_runs) / 1e3 if r.ms_runs else None
    head = f"{f'{i}/{n}':>7}{_fmt(r.wall_s, '.1f', 8)}{_fmt(runs, '.2f', 8)}  "
    return head + format_row(r)
