"""NAS-Bench-201 lookup (SPEC 8.4): a cell's 200-epoch test accuracies from a table.

Two sources:
- "csv" (default): a table with columns `arch,cifar10,cifar100,ImageNet16-120`, one
  row per cell, each the test accuracy (%) after 200 epochs averaged over the
  benchmark's seeds (`cifar10`: trained on train+valid, tested on the original test
  set; `cifar100`/`ImageNet16-120`: the x-test half). Read with the csv module in a
  fraction of a second and cached per (path, size, mtime).
- "nats_bench": the official NATS-Bench topology files through the optional
  `nats_bench` package (`pip install nats_bench`; not a dependency), queried with
  hp='200', the same numbers as the CSV.
"""

from __future__ import annotations

import csv
import functools
import os
from typing import NamedTuple

from nas_jax.genotype import AnyGenotype, NB201Genotype

DATASETS = ("cifar10", "cifar100", "ImageNet16-120")
SOURCES = ("csv", "nats_bench")
METRIC = "test accuracy (%) after 200 epochs, mean over the benchmark's seeds (hp=200)"
NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "ImageNet16-120": 120}


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
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != ("arch", *DATASETS):
            raise BenchmarkError(
                f"NAS-Bench-201 table {path} must have the header arch,{','.join(DATASETS)}; "
                f"got {header}"
            )
        return {row[0]: tuple(float(v) for v in row[1:]) for row in reader if row}


def load_table(path: str) -> dict[str, tuple[float, ...]]:
    """arch string -> accuracies in DATASETS order."""
    path = os.path.abspath(os.path.expanduser(path))
    if not os.path.isfile(path):
        raise BenchmarkError(f"NAS-Bench-201 table {path} does not exist (evaluate.nb201_table)")
    st = os.stat(path)
    return _read_csv(path, st.st_size, st.st_mtime)


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
        if arch not in rows:
            raise BenchmarkError(f"arch {arch} is not in the NAS-Bench-201 table {table}")
        acc = dict(zip(DATASETS, rows[arch], strict=True))
    else:
        raise BenchmarkError(f"evaluate.nb201_source={source!r}; accepted: {', '.join(SOURCES)}")
    return LookupResult(arch, acc, source, os.path.abspath(os.path.expanduser(table)))
