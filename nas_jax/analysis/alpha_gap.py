"""`alpha_gap`: skip-connection domination (paper Fig. 3), from metrics.jsonl.

  python -m nas_jax.analysis alpha_gap --workdir W [--conv sep_conv_3x3] [--missing drop]

Per search epoch, the mean over edges of softmax(alpha)[skip] - softmax(alpha)[conv], per
cell type and over all edges of every cell type ("all"), against the supernet's
validation accuracy that epoch (`valid_eval_acc`: eval-mode BN on the held-out half, as
the reference logs `valid_acc`), plus the Pearson, Spearman and Kendall correlations of
the two over the epochs. Nothing is rerun.

Choices the paper leaves open, as options:
  --conv     the conv op; several names (comma-separated) add up their weights. `auto`
             (default) is sep_conv_3x3, the paper's S2 conv, or nor_conv_3x3 in a space
             without it (NB201).
  --missing  an edge that lacks the skip op or every conv op (space s1): `drop` (default)
             leaves it out of the mean, `zero` counts the missing weight as 0.
The cells averaged are not stated either: every cell type is reported, and all together.

A sweep workdir: every member (seed_<k>), the per-epoch mean and std over them, and the
mean and std of each correlation.

Writes `<W>/analysis/alpha_gap/alpha_gap.json` and `alpha_gap.png`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

from nas_jax import spaces
from nas_jax.analysis import stats
from nas_jax.analysis.base import (
    ANALYSES,
    Analysis,
    AnalysisError,
    Option,
    Output,
    read_config,
    read_log,
    sweep_members,
)

NAME = "alpha_gap"
ALL = "all"
_DEFAULT_CONVS = ("sep_conv_3x3", "nor_conv_3x3")


def resolve_convs(space: spaces.SearchSpace, conv: str) -> tuple[str, ...]:
    """`--conv` as op names of the space; AnalysisError naming the space's ops otherwise."""
    ops = sorted({op for t in space.cell_types for edge in space.ops[t] for op in edge})
    if conv == "auto":
        found = [c for c in _DEFAULT_CONVS if c in ops]
        if not found:
            raise AnalysisError(f"--conv auto: space {space.name} has none of "
                                f"{', '.join(_DEFAULT_CONVS)}; name its conv op, one of "
                                f"{', '.join(ops)}")  # fmt: skip
        return (found[0],)
    names = tuple(c.strip() for c in conv.split(",") if c.strip())
    bad = [c for c in names if c not in ops] or ([] if names else [conv])
    if bad:
        raise AnalysisError(f"--conv {bad[0]!r}: not an op of space {space.name}; accepted: "
                            f"{', '.join(ops)}")  # fmt: skip
    return names


def edge_weights(space: spaces.SearchSpace, cell_type: str, per_edge) -> list[Mapping]:
    """A record's softmax(alpha) of one cell type as {op: weight} per edge, from the named
    form or the list form (the space's op order) of earlier versions."""
    if isinstance(per_edge, Mapping):
        return list(per_edge.values())
    return [dict(zip(space.edge_ops(cell_type, e), row, strict=True))
            for e, row in enumerate(per_edge)]  # fmt: skip


def edge_gaps(edges: Sequence[Mapping], skip: str, convs: Sequence[str],
              missing: str) -> list[float]:  # fmt: skip
    """skip - conv weight per edge; with missing='drop' only edges that have both."""
    out = []
    for ops in edges:
        if missing == "drop" and not (skip in ops and any(c in ops for c in convs)):
            continue
        out.append(float(ops.get(skip, 0.0)) - sum(float(ops.get(c, 0.0)) for c in convs))
    return out


def epoch_gaps(space, alphas: Mapping, skip: str, convs, missing: str) -> dict[str, float]:
    """One record's mean gap per cell type and over all edges (`all`, with two or more
    cell types); a cell type without a usable edge is left out."""
    gaps, pooled = {}, []
    for t in space.cell_types:
        if t not in alphas:
            continue
        g = edge_gaps(edge_weights(space, t, alphas[t]), skip, convs, missing)
        if g:
            gaps[t] = float(np.mean(g))
            pooled += g
    if len(gaps) > 1:
        gaps[ALL] = float(np.mean(pooled))
    return gaps


def single(workdir: str, config: Mapping, *, skip: str, conv: str, missing: str) -> dict:
    """The result of one run's workdir."""
    records = read_log(workdir, "metrics.jsonl", NAME)
    records = [r for r in records if "alphas_softmax" in r]
    if not records:
        raise AnalysisError(f"{workdir}/metrics.jsonl has no alphas_softmax record (no "
                            f"search epoch finished?), which {NAME} needs")  # fmt: skip
    space_name = config.get("model", {}).get("space")
    try:
        space = spaces.get_space(space_name)
    except KeyError as e:
        raise AnalysisError(f"{workdir}/config.json model.space: {e}") from None
    ops = {op for t in space.cell_types for edge in space.ops[t] for op in edge}
    if skip not in ops:
        raise AnalysisError(f"--skip {skip!r}: not an op of space {space.name}; accepted: "
                            f"{', '.join(sorted(ops))}")  # fmt: skip
    convs = resolve_convs(space, conv)
    epochs = []
    for i, r in enumerate(records):
        gaps = epoch_gaps(space, r["alphas_softmax"], skip, convs, missing)
        if not gaps:
            raise AnalysisError(f"space {space.name} has no edge with both {skip} and "
                                f"{' + '.join(convs)}; try --missing zero")  # fmt: skip
        epochs.append({"epoch": int(r.get("epoch", i)), "valid_eval_acc": r.get("valid_eval_acc"),
                       "gap": gaps})  # fmt: skip
    keys = list(epochs[-1]["gap"])
    corr = {}
    for k in keys:
        pts = [(e["gap"][k], e["valid_eval_acc"]) for e in epochs
               if k in e["gap"] and e["valid_eval_acc"] is not None]  # fmt: skip
        corr[k] = stats.correlations([p[0] for p in pts], [p[1] for p in pts])
        corr[k]["points"] = len(pts)
    return {"workdir": os.path.abspath(workdir), "space": space.name, "skip": skip,
            "conv": list(convs), "missing": missing, "cells": keys, "epochs": epochs,
            "correlation": corr}  # fmt: skip


def aggregate(members: Mapping[str, dict]) -> dict:
    """Per epoch (those every member has) and cell key, mean and std over the members of
    the gap and the accuracy; mean and std of each correlation."""
    runs = list(members.values())
    common = set.intersection(*({e["epoch"] for e in r["epochs"]} for r in runs))
    keys = [k for k in runs[0]["cells"] if all(k in r["cells"] for r in runs)]
    per_epoch = []
    for epoch in sorted(common):
        rows = [next(e for e in r["epochs"] if e["epoch"] == epoch) for r in runs]
        per_epoch.append({
            "epoch": epoch,
            "valid_eval_acc": stats.mean_std([e["valid_eval_acc"] for e in rows]),
            "gap": {k: stats.mean_std([e["gap"].get(k) for e in rows]) for k in keys},
        })  # fmt: skip
    corr = {k: {m: stats.mean_std([r["correlation"][k][m] for r in runs])
                for m in ("pearson", "spearman", "kendall")} for k in keys}  # fmt: skip
    return {"cells": keys, "epochs": per_epoch, "correlation": corr}


def compute(workdir: str, *, skip: str, conv: str, missing: str) -> Output:
    config = read_config(workdir)
    members = sweep_members(workdir)
    opts = dict(skip=skip, conv=conv, missing=missing)
    if members:
        runs = {os.path.basename(m): single(m, read_config(m), **opts) for m in members}
        result = {"workdir": os.path.abspath(workdir), "sweep": True, "members": runs,
                  "mean_std": aggregate(runs)}  # fmt: skip
    else:
        result = single(workdir, config, **opts)
        runs = {"": result}
    lines = describe(result)
    return Output(result, figures={f"{NAME}.png": lambda: figure(runs, lines[0])}, lines=lines)


def describe(result: Mapping) -> list[str]:
    """A head line, then per run the last gap and the correlations per cell key."""
    runs = result["members"] if result.get("sweep") else {"": result}
    first = next(iter(runs.values()))
    head = (f"alpha gap: softmax {first['skip']} - {' + '.join(first['conv'])}, mean over "
            f"edges, vs valid_eval_acc; space {first['space']}")  # fmt: skip
    return [head, *(f"{name + ': ' if name else ''}{_corr_line(r)}" for name, r in runs.items())]


def _corr_line(r: Mapping) -> str:
    parts = []
    for k in r["cells"]:
        c, last = r["correlation"][k], r["epochs"][-1]["gap"].get(k)
        gap = "n/a" if last is None else f"{last:+.4g}"
        fmt = lambda v: "n/a" if v is None else f"{v:+.3f}"  # noqa: E731
        parts.append(f"{k}: last gap {gap}, Pearson {fmt(c['pearson'])}, Spearman "
                     f"{fmt(c['spearman'])}, Kendall {fmt(c['kendall'])}")  # fmt: skip
    return "; ".join(parts)


def figure(runs: Mapping[str, dict], title: str):
    """Left: gap vs validation accuracy, one point per epoch coloured by epoch, a marker
    per cell key; right: gap (lines) and accuracy (grey, right axis) per epoch."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), layout="constrained")
    fig.suptitle(title, fontsize=9)
    ax_acc, ax_epoch = fig.subplots(1, 2)
    markers = dict(zip(("normal", "reduce", "cell", ALL), "os^D"))
    styles = ["-", "--", ":", "-."]
    last_epoch = max(e["epoch"] for r in runs.values() for e in r["epochs"]) or 1
    acc_axis = ax_epoch.twinx()
    for i, (name, r) in enumerate(runs.items()):
        prefix = f"{name} " if name else ""
        epochs = [e["epoch"] for e in r["epochs"]]
        for k in r["cells"]:
            pts = [(e["gap"][k], e["valid_eval_acc"], e["epoch"]) for e in r["epochs"]
                   if k in e["gap"] and e["valid_eval_acc"] is not None]  # fmt: skip
            if pts:
                g, a, ep = zip(*pts, strict=True)
                mark = markers.get(k, "o")
                points = ax_acc.scatter(a, g, c=ep, cmap="viridis", vmin=0, vmax=last_epoch,
                                        marker=mark, s=18, label=prefix + k)  # fmt: skip
            ax_epoch.plot(epochs, [e["gap"].get(k, np.nan) for e in r["epochs"]],
                          ls=styles[i % len(styles)], label=prefix + k)  # fmt: skip
        acc = [np.nan if e["valid_eval_acc"] is None else e["valid_eval_acc"] for e in r["epochs"]]
        acc_axis.plot(epochs, acc, color="0.6", lw=0.8, ls=styles[i % len(styles)])
    if ax_acc.collections:
        fig.colorbar(points, ax=ax_acc, label="epoch")
    ax_acc.set_xlabel("supernet valid accuracy (%)")
    ax_acc.set_ylabel("mean softmax gap, skip - conv")
    ax_acc.legend(fontsize=7)
    ax_epoch.set_xlabel("search epoch")
    ax_epoch.set_ylabel("mean softmax gap, skip - conv")
    acc_axis.set_ylabel("valid accuracy (%, grey)")
    ax_epoch.legend(fontsize=7, ncol=2 if len(runs) > 1 else 1)
    return fig


ANALYSES.register(NAME, Analysis(
    NAME, compute, "Fig. 3: mean softmax(alpha) gap skip - conv per epoch vs valid accuracy",
    options=(
        Option("skip", str, "skip_connect", "the skip op"),
        Option("conv", str, "auto", "the conv op(s), comma-separated (summed); auto: "
               "sep_conv_3x3, else nor_conv_3x3"),
        Option("missing", str, "drop", "an edge without both ops: drop it or count the "
               "missing weight as 0", choices=("drop", "zero")),
    ),
    describe=describe,
))  # fmt: skip
