r"""Prints what a workdir holds: the run's config, how far each stage got, its numbers,
the last softmax(alpha) with op names, the decisions in words, the genotypes, the
evaluation and the files.

  python -m nas_jax.show /tmp/run            # text
  python -m nas_jax.show /tmp/run --json     # the same as one JSON object

It only reads (a running run's workdir is fine: it says the run is in progress). A sweep
workdir (`num_seeds` > 1) is shown as its seed table, then member after member.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping

from nas_jax import workdir as workdir_lib
from nas_jax.reporting import read_jsonl

# Per-epoch search numbers shown when present, in this order (method-specific ones appear
# only in the runs of methods that log them).
_SEARCH_KEYS = ("train_loss", "train_acc", "valid_eval_loss", "valid_eval_acc", "valid_loss",
                "valid_acc", "arch_grad_norm", "weight_grad_norm", "epsilon",
                "adv_loss_before", "adv_loss_after")  # fmt: skip


class ShowError(ValueError):
    """The folder is not a nas_jax workdir (or its config.json is unreadable)."""


def _read_json(path: str):
    with open(path) as f:
        return json.load(f)


def _jsonl(path: str) -> list[dict]:
    return read_jsonl(path) if os.path.exists(path) else []


def summarize(workdir: str) -> dict:
    """What `python -m nas_jax.show` prints, as data."""
    config = workdir_lib.read_record(workdir)
    if config is None:
        raise ShowError(f"{workdir} is not a nas_jax workdir: it has no "
                        f"{workdir_lib.CONFIG_FILE}")  # fmt: skip
    out = {
        "workdir": os.path.abspath(workdir),
        "in_use": workdir_lib.holder(workdir),
        "config": {
            "stages": config.get("stages"),
            "seed": config.get("seed"),
            "num_seeds": config.get("num_seeds", 1),
            "data": config.get("data", {}).get("name"),
            "space": config.get("model", {}).get("space"),
            "search_method": config.get("search", {}).get("method"),
            "select_method": config.get("select", {}).get("method"),
            "genotype": config.get("genotype") or None,
        },
        "stages_recorded": sorted(workdir_lib.recorded_stages(config)),
    }
    summary_path = os.path.join(workdir, "summary.json")
    members = workdir_lib.member_dirs(workdir)
    if members:
        out["sweep"] = _read_json(summary_path) if os.path.exists(summary_path) else None
        out["members"] = {d: summarize(os.path.join(workdir, d)) for d in members}
        return out
    out["search"] = _search(workdir, config)
    out["select"] = _select(workdir)
    result = os.path.join(workdir, "result.json")
    out["evaluate"] = _read_json(result) if os.path.exists(result) else None
    out["files"] = sorted(
        n for n in os.listdir(workdir) if not n.startswith(".") and not n.endswith(".tmp")
    )
    return out


def _search(workdir: str, config: Mapping) -> dict | None:
    records = [r for r in _jsonl(os.path.join(workdir, "metrics.jsonl")) if "epoch" in r]
    if not records:
        return None
    last = records[-1]
    return {
        "epochs_done": last["epoch"] + 1,
        "epochs": config.get("search", {}).get("epochs"),
        "seconds": sum(r.get("seconds", 0.0) for r in records),
        "last": {k: last[k] for k in _SEARCH_KEYS if k in last},
        "alphas_softmax": last.get("alphas_softmax"),
        "magnitude_genotype": last.get("genotype"),
    }


def _select(workdir: str) -> dict | None:
    decisions = _jsonl(os.path.join(workdir, "decisions.jsonl"))
    genotypes = {}
    for name in ("genotype.json", "genotype_magnitude.json"):
        path = os.path.join(workdir, name)
        if os.path.exists(path):
            genotypes[name] = _read_json(path)
    if not decisions and not genotypes:
        return None
    final = genotypes.get("genotype.json", {})
    return {
        "method": final.get("method"),
        "genotype": final.get("text"),
        "magnitude_genotype": genotypes.get("genotype_magnitude.json", {}).get("text"),
        "decisions": decisions,
    }


def _alpha_table(cell_type: str, per_edge) -> list[str]:
    """softmax(alpha) of one cell type, an edge per line, each edge's largest weight
    marked with *."""
    if not isinstance(per_edge, Mapping):  # the list form of earlier versions
        per_edge = {f"edge {e}": {f"op {k}": w for k, w in enumerate(row)}
                    for e, row in enumerate(per_edge)}  # fmt: skip
    rows = list(per_edge.items())
    same_ops = len({tuple(ops) for _, ops in rows}) == 1
    width = max(len(name) for name, _ in rows)
    lines = [f"  softmax(alpha), {cell_type}:"]
    if same_ops:
        ops = list(rows[0][1])
        cols = [max(len(op), 6) for op in ops]
        lines.append("    " + " " * width + "".join(f"  {op:>{c}}" for op, c in zip(ops, cols)))
    for name, ops in rows:
        best = max(ops, key=ops.get)
        cells = []
        for k, (op, w) in enumerate(ops.items()):
            mark = "*" if op == best else " "
            if same_ops:
                cells.append(f"  {w:>{cols[k] - 1}.4f}{mark}")
            else:
                cells.append(f"  {op} {w:.4f}{mark}")
        lines.append(f"    {name:<{width}}" + "".join(cells))
    return lines


def format_summary(s: Mapping, indent: str = "") -> str:
    from nas_jax.evaluation.run import summary as evaluation_summary
    from nas_jax.selection.run import describe_decision

    c = s["config"]
    lines = [f"Workdir {s['workdir']}"]
    if s.get("in_use"):
        lines.append(f"  In progress: {s['in_use']}")
    what = [f"stages {', '.join(c['stages'] or [])}", f"seed {c['seed']}", f"data {c['data']}"]
    if c.get("genotype"):
        what.append(f"genotype {c['genotype']}")
    else:
        what += [f"space {c['space']}", f"search {c['search_method']}",
                 f"selection {c['select_method']}"]  # fmt: skip
    lines.append("  Config: " + ", ".join(what))
    if "members" in s:
        from nas_jax.sweep import format_table

        lines.append(f"  Sweep of {c['num_seeds']} seeds")
        if s.get("sweep"):
            lines += ["  " + line for line in format_table(s["sweep"]).splitlines()]
        for member in s["members"].values():
            lines += ["", format_summary(member, indent + "  ")]
        return "\n".join(indent + line if line else line for line in lines)

    search = s.get("search")
    if search:
        numbers = ", ".join(f"{k} {v:.4g}" for k, v in search["last"].items())
        lines.append(f"  Search: {search['epochs_done']}/{search['epochs']} epochs in "
                     f"{search['seconds']:.1f} s")  # fmt: skip
        lines.append(f"    last epoch: {numbers}")
        for t, per_edge in (search["alphas_softmax"] or {}).items():
            lines += _alpha_table(t, per_edge)
        if search["magnitude_genotype"]:
            lines.append(f"  Magnitude genotype after the last epoch: "
                         f"{search['magnitude_genotype']}")  # fmt: skip
    select = s.get("select")
    if select:
        decisions = select["decisions"]
        lines.append(f"  Selection ({select['method']}): {len(decisions)} decisions")
        for r in decisions:
            acc = ""
            if "valid_acc_before" in r:
                acc = f"; valid acc {r['valid_acc_before']:.2f} -> {r['valid_acc_after']:.2f}"
            lines.append(f"    event {r['event']}: {describe_decision(r)}{acc}")
        if select["genotype"]:
            lines.append(f"  Selected genotype: {select['genotype']}")
        if select["magnitude_genotype"] and select["magnitude_genotype"] != select["genotype"]:
            lines.append(f"  Magnitude genotype: {select['magnitude_genotype']}")
    if s.get("evaluate"):
        lines += ["  " + line for line in evaluation_summary(s["evaluate"]).splitlines()]
    if not (search or select or s.get("evaluate")):
        lines.append("  Nothing recorded yet")
    lines.append(f"  Files: {', '.join(s['files'])}")
    return "\n".join(indent + line for line in lines)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in args
    args = [a for a in args if a != "--json"]
    if len(args) != 1 or args[0].startswith("-"):
        print("usage: python -m nas_jax.show WORKDIR [--json]", file=sys.stderr)
        return 2
    try:
        s = summarize(args[0])
    except (ShowError, workdir_lib.WorkdirError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(s, indent=1) if as_json else format_summary(s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
