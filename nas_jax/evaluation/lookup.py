"""NAS-Bench-201 lookup (SPEC 8.4): a cell's 200-epoch test accuracies from a table.

Two sources:
- "csv" (default): a table with columns `arch,cifar10,cifar100,ImageNet16-120`, one
  row per cell, each the test accuracy (%) after 200 epochs averaged over the
  benchmark's seeds (`cifar10`: trained on train+valid, tested on the original test
  set; `cifar100`/`ImageNet16-120`: the x-test half). Read and checked strictly (one
  `BenchmarkError` line `<path>:<line>: why` for any fault; see `load_table`) in a
  fraction of a second and cached per (path, size, mtime).
- "nats_bench": the official NATS-Bench topology files through the optional
  `nats_bench` package (`pip install nats_bench`; not a dependency), queried with
  hp='200', the same numbers as the CSV.
"""

from __future__ import annotations

import functools
import math
import os
from typing import NamedTuple

from nas_jax.families.nb201 import parse_text
from nas_jax.genotype import AnyGenotype, NB201Genotype
from nas_jax.reporting import logger

DATASETS = ("cifar10", "cifar100", "ImageNet16-120")
SOURCES = ("csv", "nats_bench")
METRIC = "test accuracy (%) after 200 epochs, mean over the benchmark's seeds (hp=200)"
NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "ImageNet16-120": 120}
HEADER = ",".join(("arch", *DATASETS))
NUM_ROWS = 15_625  # 5 ops on 6 edges


class BenchmarkError(ValueError):
    """A cell that cannot be looked up; the message is one line saying why."""


class LookupResult(NamedTuple):
    arch: str
    test_accuracy: dict[str, float]  # dataset column -> accuracy in %
    source: str
    table: str
    metric: str = METRIC


def arch_string(genotype: AnyGenotype) -> str:
    """The canonical NB201 string `|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`."""
    if not isinstance(genotype, NB201Genotype):
        raise BenchmarkError(
            "NAS-Bench-201 lookup needs an NB201 cell ('|op~0|+|op~0|op~1|+...'), got a "
            f"{type(genotype).__name__}; use evaluate.method='retrain' for DARTS cells"
        )
    return genotype.to_text()


@functools.cache
def _read_csv(path: str, size: int, mtime: float) -> dict[str, tuple[float, ...]]:
    del size, mtime  # cache key only: a rewritten file is read again
    with open(path, newline="") as f:
        text = f.read()
    lines = text.splitlines()

    def fail(lineno: int, why: str) -> BenchmarkError:
        return BenchmarkError(
            f"{path}:{lineno}: {why} (the NAS-Bench-201 table, evaluate.nb201_table)"
        )

    if not lines:
        raise fail(1, f"the file is empty; expected the header {HEADER}")
    if not text.endswith("\n"):  # a cut-off last line can look complete: 16.3222 read as 16.3
        raise fail(
            len(lines),
            f"the file does not end with a newline, so its last line may be cut off: "
            f"{lines[-1][:120]!r}; restore the complete file",
        )
    if lines[0].strip() != HEADER:
        raise fail(1, f"the header must be {HEADER}, got {lines[0][:120]!r}")
    rows: dict[str, tuple[float, ...]] = {}
    first_line: dict[str, int] = {}
    for lineno, line in enumerate(lines[1:], start=2):
        cells = line.split(",")
        if not line.strip():
            raise fail(lineno, "the line is empty")
        if len(cells) != len(DATASETS) + 1:
            raise fail(lineno, f"{len(cells)} cells, expected {len(DATASETS) + 1} ({HEADER})")
        arch = cells[0].strip()
        try:
            canonical = parse_text(arch).to_text()
        except ValueError as e:
            raise fail(lineno, str(e)) from None
        if canonical != arch:
            raise fail(lineno, f"arch {arch!r} is not in the canonical form {canonical!r}")
        if arch in first_line:
            raise fail(lineno, f"arch {arch} repeats line {first_line[arch]}")
        values = []
        for column, cell in zip(DATASETS, cells[1:], strict=True):
            try:
                value = float(cell)
            except ValueError:
                value = math.nan
            if not 0.0 <= value <= 100.0:  # nan fails too
                raise fail(lineno, f"{column} is {cell.strip()!r}, not an accuracy in [0, 100]")
            values.append(value)
        rows[arch] = tuple(values)
        first_line[arch] = lineno
    return rows


def load_table(path: str) -> dict[str, tuple[float, ...]]:
    """arch string -> accuracies in DATASETS order.

    The file is checked strictly, and any fault is a one-line `BenchmarkError`
    `<path>:<line>: why`: the header, a newline at the end (else the last line may be
    cut off), the cell count of every line, arch strings that are canonical NB201 cells and
    appear once, accuracies that are numbers in [0, 100]. Read once per (path, size, mtime).
    A table may hold fewer than the 15,625 cells (a lookup from it logs a WARNING).
    """
    path = os.path.abspath(os.path.expanduser(path))
    if not os.path.isfile(path):
        raise BenchmarkError(f"NAS-Bench-201 table {path} does not exist (evaluate.nb201_table)")
    st = os.stat(path)
    return _read_csv(path, st.st_size, st.st_mtime)


@functools.cache
def _warn_partial(path: str, num_rows: int) -> None:
    """Once per table and process: a table that is not the full benchmark."""
    logger.warning(
        "NAS-Bench-201 table %s holds %d rows; the full benchmark has %d", path, num_rows, NUM_ROWS
    )


def _query_nats_bench(path: str, arch: str) -> dict[str, float]:
    try:
        import nats_bench  # optional extra
    except ImportError:
        raise BenchmarkError(
            "evaluate.nb201_source='nats_bench' needs the nats_bench package "
            "(pip install nats_bench) and its benchmark files"
        ) from None
    api = nats_bench.create(os.path.expanduser(path), "tss", fast_mode=True, verbose=False)
    index = api.query_index_by_arch(arch)
    if index < 0:
        raise BenchmarkError(f"arch {arch} is not in the NATS-Bench topology space at {path}")
    return {
        d: float(api.get_more_info(index, d, hp="200", is_random=False)["test-accuracy"])
        for d in DATASETS
    }


def lookup(genotype: AnyGenotype, table: str, source: str = "csv") -> LookupResult:
    """The cell's test accuracies; raises BenchmarkError with one line on any failure."""
    arch = arch_string(genotype)
    if not table:
        raise BenchmarkError("NAS-Bench-201 lookup needs --config.evaluate.nb201_table=PATH")
    if source == "nats_bench":
        acc = _query_nats_bench(table, arch)
    elif source == "csv":
        rows = load_table(table)
        partial = f" (it holds {len(rows)} of the {NUM_ROWS} cells)" if len(rows) < NUM_ROWS else ""
        if arch not in rows:
            raise BenchmarkError(f"arch {arch} is not in the NAS-Bench-201 table {table}{partial}")
        if partial:
            _warn_partial(os.path.abspath(os.path.expanduser(table)), len(rows))
        acc = dict(zip(DATASETS, rows[arch], strict=True))
    else:
        raise BenchmarkError(f"evaluate.nb201_source={source!r}; accepted: {', '.join(SOURCES)}")
    return LookupResult(arch, acc, source, os.path.abspath(os.path.expanduser(table)))
