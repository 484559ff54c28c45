"""`selection_curve`: the supernet's validation accuracy along the selection (paper Fig. 6,
section 6.2: PT vs PT-Mag), from decisions.jsonl and select_metrics.jsonl.

  python -m nas_jax.analysis selection_curve --workdir W_pt --compare W_ptmag

One curve per workdir (labelled by its folder and `select.method`; a sweep workdir gives
one per member and their mean and std): x = decision number (0 = the supernet before the
first decision), y = the accuracy after that decision, `valid_acc_after` in
decisions.jsonl (measured on the batches of that decision's first scoring pass; needs
`select.log_accuracy`, on by default). With progressive tuning, the tuning epochs' valid
accuracy (`valid_acc` in select_metrics.jsonl: the mean over the epoch's architecture
steps) is a second series, per tuning epoch.

Writes into the first workdir: `<W>/analysis/selection_curve/selection_curve.json` and
`selection_curve.png`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from nas_jax.analysis import stats
from nas_jax.analysis.base import (
    ANALYSES,
    Analysis,
    AnalysisError,
    Option,
    Output,
    label,
    read_config,
    read_log,
    sweep_members,
)
from nas_jax.reporting import read_jsonl

NAME = "selection_curve"


def curve(workdir: str, config: Mapping) -> dict:
    """One run's selection: its decision points and its tuning epochs."""
    from nas_jax.selection.run import describe_decision

    records = read_log(workdir, "decisions.jsonl", NAME)
    missing = [i for i, r in enumerate(records) if "valid_acc_after" not in r]
    if missing:
        raise AnalysisError(f"{workdir}/decisions.jsonl: decision {missing[0] + 1} has no "
                            "valid_acc_after (rerun the selection with "
                            "--config.select.log_accuracy=True)")  # fmt: skip
    points = [{"decision": 0, "valid_acc": records[0].get("valid_acc_before")}]
    for n, r in enumerate(records, 1):
        points.append({"decision": n, "event": r["event"], "epoch": r.get("epoch"),
                       "cell_type": r["cell_type"], "kind": r["kind"],
                       "what": describe_decision(r), "valid_acc_before": r.get("valid_acc_before"),
                       "valid_acc": r["valid_acc_after"]})  # fmt: skip
    tuning = [{"epoch": r["epoch"], "event": r.get("event"), "valid_acc": r["valid_acc"]}
              for r in read_jsonl(os.path.join(workdir, "select_metrics.jsonl"))
              if "valid_acc" in r and "epoch" in r]  # fmt: skip
    return {"workdir": os.path.abspath(workdir), "label": label(workdir, config),
            "method": config.get("select", {}).get("method"), "points": points,
            "tuning": tuning}  # fmt: skip


def _expand(workdir: str) -> tuple[list[dict], dict | None]:
    """A workdir's curves (one, or one per sweep member) and, for a sweep, the mean and
    std over its members per decision number."""
    config = read_config(workdir)
    members = sweep_members(workdir)
    if not members:
        return [curve(workdir, config)], None
    curves = []
    for m in members:
        c = curve(m, read_config(m))
        c["label"] = f"{os.path.basename(os.path.normpath(workdir))}/{c['label']}"
        curves.append(c)
    n = min(len(c["points"]) for c in curves)
    mean = {"label": f"{label(workdir, config)}, mean of {len(curves)} seeds",
            "points": [{"decision": i, **stats.mean_std([c["points"][i]["valid_acc"]
                                                         for c in curves])}
                       for i in range(n)]}  # fmt: skip
    return curves, mean


def compute(workdir: str, *, compare: Sequence[str]) -> Output:
    curves, sweeps = [], []
    for w in (workdir, *compare):
        cs, mean = _expand(w)
        curves += cs
        if mean is not None:
            sweeps.append(mean)
    result = {"workdir": os.path.abspath(workdir), "curves": curves, "sweep_means": sweeps}
    figures = {f"{NAME}.png": lambda: figure(curves, sweeps)}
    return Output(result, figures=figures, lines=describe(result))


def describe(result: Mapping) -> list[str]:
    """Per curve: its label, the number of decisions and the accuracies."""
    lines = []
    for c in result["curves"]:
        accs = " ".join("n/a" if p["valid_acc"] is None else f"{p['valid_acc']:.1f}"
                        for p in c["points"])  # fmt: skip
        lines.append(f"{c['label']}: {len(c['points']) - 1} decisions, valid acc {accs}")
    return lines


def figure(curves: Sequence[dict], sweeps: Sequence[dict]):
    """Left: accuracy after each decision; right (with tuning): per tuning epoch."""
    from matplotlib.figure import Figure

    tuned = any(c["tuning"] for c in curves)
    fig = Figure(figsize=(10 if tuned else 5.5, 4), layout="constrained")
    axes = fig.subplots(1, 2 if tuned else 1, squeeze=False)[0]
    fig.suptitle("Supernet validation accuracy during the selection", fontsize=9)
    for c in curves:
        pts = [p for p in c["points"] if p["valid_acc"] is not None]
        axes[0].plot([p["decision"] for p in pts], [p["valid_acc"] for p in pts], marker=".",
                     lw=1.0, label=c["label"])  # fmt: skip
        if tuned and c["tuning"]:
            axes[1].plot([t["epoch"] for t in c["tuning"]], [t["valid_acc"] for t in c["tuning"]],
                         lw=1.0, label=c["label"])  # fmt: skip
    for s in sweeps:
        x = [p["decision"] for p in s["points"]]
        m = [p["mean"] for p in s["points"]]
        sd = [p["std"] for p in s["points"]]
        (line,) = axes[0].plot(x, m, lw=2.0, label=s["label"])
        axes[0].fill_between(x, [a - b for a, b in zip(m, sd)], [a + b for a, b in zip(m, sd)],
                             color=line.get_color(), alpha=0.2)  # fmt: skip
    axes[0].set_xlabel("decision (0 = before the first)")
    axes[0].set_ylabel("valid accuracy after the decision (%)")
    axes[0].legend(fontsize=7)
    if tuned:
        axes[1].set_xlabel("tuning epoch")
        axes[1].set_ylabel("valid accuracy, tuning epoch mean (%)")
        axes[1].legend(fontsize=7)
    return fig


ANALYSES.register(NAME, Analysis(
    NAME, compute, "Fig. 6: supernet valid accuracy after each selection decision",
    options=(Option("compare", str, (), "more workdirs, one curve each (e.g. PT-Mag next "
                    "to PT)", nargs="*"),),
    describe=describe,
))  # fmt: skip
