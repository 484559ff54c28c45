"""`report`: one page about a run, `<W>/analysis/report/report.md` and `report.html`.

  python -m nas_jax.analysis report --workdir W

It collects the run's config, the search curves (`search_curves.png`: train loss and
eval-mode valid accuracy per epoch, drawn here), the pictures the run left (alphas.png,
alpha_evolution.png, cells.png; linked relatively, so the folder can be moved with its
workdir), the selection's decisions in words, the genotypes, the evaluation and every
analysis already written under `<W>/analysis/` (its result in words, its pictures and
its JSON). Run the other analyses first to have them in the report. A sweep workdir gets
its seed table, then a section per member. The words come from `nas_jax.show`.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Mapping

from nas_jax import show
from nas_jax.analysis.base import (
    ANALYSES,
    ANALYSIS_DIR,
    Analysis,
    AnalysisError,
    Output,
    read_config,
    read_log,
)
from nas_jax.selection.draw import have_matplotlib

NAME = "report"
PICTURES = (("alphas.png", "softmax(alpha) after the last search epoch"),
            ("alpha_evolution.png", "softmax(alpha) per search epoch"),
            ("cells.png", "the selected cells"))  # fmt: skip
_CONFIG_SECTIONS = ("data", "model", "search", "select", "evaluate")

# A report is a list of blocks, rendered to Markdown and to HTML:
#   ("h", level, text) ("p", text) ("pre", text) ("list", [text]) ("img", path, caption)
#   ("link", path, text)


def _member_blocks(workdir: str, s: Mapping, prefix: str, tag: str, level: int) -> tuple:
    """The blocks of one run (a single workdir or a sweep member) and its figures.
    `prefix`: the path from the report's folder to the run's folder."""
    from nas_jax.evaluation.run import summary as evaluation_summary
    from nas_jax.selection.run import describe_decision

    blocks, figures = [], {}
    config = read_config(workdir)
    blocks += [("h", level, "Config"),
               ("p", next(ln.strip() for ln in show.format_summary(s).splitlines()
                          if ln.strip().startswith("Config:"))),
               ("pre", "\n".join(f"{k}: {json.dumps(config[k])}"
                                 for k in _CONFIG_SECTIONS if k in config))]  # fmt: skip
    search = s.get("search")
    if search:
        last = ", ".join(f"{k} {v:.4g}" for k, v in search["last"].items())
        blocks += [("h", level, "Search"),
                   ("p", f"{search['epochs_done']}/{search['epochs']} epochs in "
                         f"{search['seconds']:.1f} s; last epoch: {last}")]  # fmt: skip
        if have_matplotlib():
            records = [r for r in read_log(workdir, "metrics.jsonl", NAME) if "epoch" in r]
            name = f"search_curves{tag}.png"
            figures[name] = lambda: search_figure(records, os.path.basename(workdir))
            blocks.append(("img", name, "train loss and eval-mode valid accuracy per epoch"))
        if search["magnitude_genotype"]:
            blocks.append(("p", f"Magnitude genotype after the last epoch: "
                                f"`{search['magnitude_genotype']}`"))  # fmt: skip
    for file_name, caption in PICTURES:
        if os.path.isfile(os.path.join(workdir, file_name)):
            blocks.append(("img", prefix + file_name, caption))
    select = s.get("select")
    if select:
        items = []
        for r in select["decisions"]:
            acc = ""
            if "valid_acc_before" in r:
                acc = f"; valid acc {r['valid_acc_before']:.2f} -> {r['valid_acc_after']:.2f}"
            items.append(f"event {r['event']}: {describe_decision(r)}{acc}")
        blocks += [("h", level, f"Selection ({select['method']})"),
                   ("p", f"{len(select['decisions'])} decisions")]  # fmt: skip
        if items:
            blocks.append(("list", items))
        for what, text in (("Selected genotype", select["genotype"]),
                           ("Magnitude genotype", select["magnitude_genotype"])):  # fmt: skip
            if text:
                blocks.append(("p", f"{what}: `{text}`"))
    if s.get("evaluate"):
        blocks += [("h", level, "Evaluation"), ("pre", evaluation_summary(s["evaluate"]))]
    return blocks, figures


def _analysis_blocks(workdir: str, prefix: str, level: int) -> tuple[list, list[str]]:
    """Every analysis written under `<workdir>/analysis/` except the report itself."""
    folder = os.path.join(workdir, ANALYSIS_DIR)
    names = sorted(n for n in os.listdir(folder) if n != NAME) if os.path.isdir(folder) else []
    blocks, found = [], []
    for name in names:
        path = os.path.join(folder, name, f"{name}.json")
        if not os.path.isfile(path):
            continue
        found.append(name)
        blocks.append(("h", level + 1, name))
        entry = ANALYSES.get(name) if name in ANALYSES else None
        if entry is not None and entry.describe is not None:
            with open(path) as f:
                blocks.append(("list", entry.describe(json.load(f))))
        for file_name in sorted(os.listdir(os.path.join(folder, name))):
            if file_name.endswith(".png"):
                blocks.append(("img", f"{prefix}{ANALYSIS_DIR}/{name}/{file_name}", file_name))
        blocks.append(("link", f"{prefix}{ANALYSIS_DIR}/{name}/{name}.json", f"{name}.json"))
    if blocks:
        blocks.insert(0, ("h", level, "Analyses"))
    return blocks, found


def compute(workdir: str) -> Output:
    read_config(workdir)
    try:
        s = show.summarize(workdir)
    except (show.ShowError, ValueError) as e:
        raise AnalysisError(" ".join(str(e).split())) from None
    blocks = [("h", 1, f"nas_jax run: {s['workdir']}")]
    figures, analyses = {}, {}
    if "members" in s:
        from nas_jax.sweep import format_table

        blocks.append(("p", f"Sweep of {s['config']['num_seeds']} seeds"))
        if s.get("sweep"):
            blocks.append(("pre", format_table(s["sweep"])))
        a, analyses[""] = _analysis_blocks(workdir, "../../", 2)  # those over the sweep
        blocks += a
        for member, ms in s["members"].items():
            mdir = os.path.join(workdir, member)
            b, f = _member_blocks(mdir, ms, f"../../{member}/", f"_{member}", 3)
            a, analyses[member] = _analysis_blocks(mdir, f"../../{member}/", 3)
            blocks += [("h", 2, member), *b, *a]
            figures.update(f)
    else:
        b, figures = _member_blocks(workdir, s, "../../", "", 2)
        a, analyses[""] = _analysis_blocks(workdir, "../../", 2)
        blocks += b + a
    blocks += [("h", 2, "Files"), ("p", ", ".join(s.get("files", [])) or "(a sweep)")]
    result = {"workdir": s["workdir"], "summary": s, "analyses": analyses,
              "links": [b[1] for b in blocks if b[0] in ("img", "link")]}  # fmt: skip
    texts = {"report.md": to_markdown(blocks), "report.html": to_html(blocks, s["workdir"])}
    lines = [f"report of {s['workdir']}: {sum(b[0] == 'h' for b in blocks)} sections"]
    return Output(result, figures=figures, texts=texts, lines=lines)


def to_markdown(blocks) -> str:
    out = []
    for b in blocks:
        kind = b[0]
        if kind == "h":
            out.append(f"{'#' * b[1]} {b[2]}")
        elif kind == "p":
            out.append(b[1])
        elif kind == "pre":
            out.append(f"```\n{b[1]}\n```")
        elif kind == "list":
            out.append("\n".join(f"- {item}" for item in b[1]))
        elif kind == "img":
            out.append(f"![{b[2]}]({b[1]})")
        elif kind == "link":
            out.append(f"[{b[2]}]({b[1]})")
    return "\n\n".join(out) + "\n"


def _inline(text: str) -> str:
    """Markdown `code` spans as <code>, everything else escaped."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def to_html(blocks, title: str) -> str:
    body = []
    for b in blocks:
        kind = b[0]
        if kind == "h":
            body.append(f"<h{b[1]}>{html.escape(b[2])}</h{b[1]}>")
        elif kind == "p":
            body.append(f"<p>{_inline(b[1])}</p>")
        elif kind == "pre":
            body.append(f"<pre>{html.escape(b[1])}</pre>")
        elif kind == "list":
            body.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in b[1]) + "</ul>")
        elif kind == "img":
            src, cap = html.escape(b[1], quote=True), html.escape(b[2])
            body.append(f'<figure><img src="{src}" alt="{cap}" style="max-width:100%">'
                        f"<figcaption>{cap}</figcaption></figure>")  # fmt: skip
        elif kind == "link":
            body.append(f'<p><a href="{html.escape(b[1], quote=True)}">{html.escape(b[2])}</a></p>')
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title></head>\n<body style=\"font-family:sans-serif;"
            "max-width:60em;margin:auto\">\n" + "\n".join(body) + "\n</body></html>\n")  # fmt: skip


def search_figure(records, title: str):
    """Train loss (left axis) and eval-mode valid accuracy (right axis) per search epoch."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.5), layout="constrained")
    ax = fig.subplots()
    epochs = [r["epoch"] for r in records]
    ax.plot(epochs, [r.get("train_loss", float("nan")) for r in records], color="C0",
            marker=".", label="train loss")  # fmt: skip
    ax.set_xlabel("search epoch")
    ax.set_ylabel("train loss", color="C0")
    acc = ax.twinx()
    acc.plot(epochs, [r.get("valid_eval_acc", float("nan")) for r in records], color="C1",
             marker=".", label="valid_eval_acc")  # fmt: skip
    acc.set_ylabel("valid accuracy, eval mode (%)", color="C1")
    ax.set_title(f"search: {title}", fontsize=9)
    return fig


ANALYSES.register(NAME, Analysis(
    NAME, compute, "report.md and report.html: the run and every analysis written so far",
))  # fmt: skip
