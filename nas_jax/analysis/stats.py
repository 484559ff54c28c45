"""Correlations for the analyses, in numpy (scipy is not a dependency): Pearson, Spearman
(average ranks for ties) and Kendall's tau-b, as `scipy.stats` defines them."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    """None when it is undefined (fewer than 2 points, or a constant series)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) < 2:
        return None
    dx, dy = x - x.mean(), y - y.mean()
    norm = math.sqrt(float(dx @ dx) * float(dy @ dy))
    return float(dx @ dy / norm) if norm > 0 else None


def ranks(x: Sequence[float]) -> np.ndarray:
    """1-based ranks, ties sharing their average rank."""
    x = np.asarray(x, np.float64)
    order = np.argsort(x, kind="stable")
    out = np.empty(len(x))
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and x[order[j + 1]] == x[order[i]]:
            j += 1
        out[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    return pearson(ranks(x), ranks(y)) if len(x) >= 2 else None


def kendall(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Kendall's tau-b (ties in either series corrected for)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) < 2:
        return None
    i, j = np.triu_indices(len(x), k=1)
    sx, sy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
    n_x, n_y = int(np.count_nonzero(sx)), int(np.count_nonzero(sy))
    if n_x == 0 or n_y == 0:
        return None
    return float((sx * sy).sum() / math.sqrt(n_x * n_y))


def correlations(x: Sequence[float], y: Sequence[float]) -> dict[str, float | None]:
    return {"pearson": pearson(x, y), "spearman": spearman(x, y), "kendall": kendall(x, y)}


def mean_std(values: Sequence[float | None]) -> dict[str, float | None]:
    """Mean and standard deviation of the defined values (ddof 1 from two values on, as
    the sweep's summary.json)."""
    v = [float(a) for a in values if a is not None]
    if not v:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1 if len(v) > 1 else 0)),
            "n": len(v)}  # fmt: skip
