"""Pictures of how alpha evolved during the search (needs matplotlib: the `plots` extra).

`write_alpha_plots(workdir, space)` reads the search's `metrics.jsonl` (one record per
epoch with `alphas_softmax`: per cell type, per edge (named `node <- input`), each op's
softmax(alpha)) and writes two pictures next to it:

* `alphas.png`: per cell type, a heat-map of the last epoch's softmax(alpha), edges
  (`node <- input`, as `spaces.SearchSpace.edges` orders them) by ops, each edge's
  largest weight in bold;
* `alpha_evolution.png`: per cell type and edge, each op's weight over the epochs.

Both are written atomically; nothing numeric in the workdir changes.
"""

from __future__ import annotations

import math
import os
import re

import numpy as np

from nas_jax import spaces
from nas_jax.reporting import logger, read_jsonl
from nas_jax.selection.draw import _op_color, have_matplotlib

ALPHAS_PNG = "alphas.png"
EVOLUTION_PNG = "alpha_evolution.png"


def edge_labels(space: spaces.SearchSpace) -> list[str]:
    """`node <- input` per edge id, named as in the logs and decisions.jsonl
    (`SearchSpace.edge_name`), the cell inputs in mathtext."""
    return [_math(space.edge_name(e)) for e in range(space.num_edges)]


def _math(text: str) -> str:
    return re.sub(r"(c_\{k(?:-\d)?\})", r"$\1$", text)


def alphas_matrix(per_edge) -> list[list[float]]:
    """A record's softmax(alpha) of one cell type as an edges x ops list: from the named
    form ({edge name: {op: weight}}) or the list form that earlier versions wrote."""
    if isinstance(per_edge, dict):
        return [list(ops.values()) for ops in per_edge.values()]
    return per_edge


def read_alphas(metrics_path: str) -> tuple[list[int], dict[str, np.ndarray]]:
    """The epochs and, per cell type, softmax(alpha) as an (epochs, edges, ops) array,
    from the records of a search's metrics.jsonl that carry `alphas_softmax`."""
    records = [r for r in read_jsonl(metrics_path) if "alphas_softmax" in r]
    epochs = [int(r.get("epoch", i)) for i, r in enumerate(records)]
    types = records[0]["alphas_softmax"].keys() if records else ()
    return epochs, {
        t: np.asarray([alphas_matrix(r["alphas_softmax"][t]) for r in records]) for t in types
    }


def _op_columns(space: spaces.SearchSpace, cell_type: str) -> list[str] | None:
    """The op names of the heat-map's columns when every edge has the same ops, else
    None (space s1: two different ops per edge; then each square names its op)."""
    ops = set(space.ops[cell_type])
    return list(space.ops[cell_type][0]) if len(ops) == 1 else None


def save_png(fig, path: str) -> None:
    """Writes a matplotlib Figure as a PNG, atomically."""
    tmp = path + ".tmp"
    fig.savefig(tmp, format="png", dpi=100)
    os.replace(tmp, path)


def heatmap_figure(space: spaces.SearchSpace, weights: dict[str, np.ndarray], title: str):
    """A matplotlib Figure: one heat-map (edges x ops) per cell type."""
    from matplotlib.figure import Figure

    types = [t for t in space.cell_types if t in weights]
    rows, ncols = space.num_edges, space.num_ops
    fig = Figure(figsize=(1.6 + 0.75 * ncols * len(types), 1.2 + 0.3 * rows), layout="constrained")
    fig.suptitle(title, fontsize=9)
    axes = fig.subplots(1, len(types), squeeze=False)[0]
    labels = edge_labels(space)
    for ax, t in zip(axes, types, strict=True):
        w = np.asarray(weights[t], dtype=float)
        lo, hi = float(w.min()), max(float(w.max()), float(w.min()) + 1e-6)
        image = ax.imshow(w, cmap="viridis", vmin=lo, vmax=hi, aspect="auto")
        cols = _op_columns(space, t)
        ax.set_xticks(range(ncols), cols or [f"op {k}" for k in range(ncols)], rotation=45,
                      ha="right", fontsize=7)  # fmt: skip
        ax.set_yticks(range(rows), labels if ax is axes[0] else [""] * rows, fontsize=7)
        ax.set_title(t if t == "cell" else f"{t} cell", fontsize=9)
        best = w.argmax(axis=1)
        digits = 3 if hi - lo < 0.05 else 2  # early in a search the weights barely differ
        for e in range(rows):
            for k in range(ncols):
                value = f"{w[e, k]:.{digits}f}"
                text = value if cols else f"{space.ops[t][e][k]}\n{value}"
                dark = w[e, k] < lo + 0.6 * (hi - lo)
                ax.text(k, e, text, ha="center", va="center", fontsize=6,
                        color="white" if dark else "black",
                        fontweight="bold" if k == best[e] else "normal")  # fmt: skip
        bar = fig.colorbar(image, ax=ax, shrink=0.8)
        bar.ax.tick_params(labelsize=6)
    return fig


def evolution_figure(space: spaces.SearchSpace, epochs: list[int],
                     weights: dict[str, np.ndarray], title: str):  # fmt: skip
    """A matplotlib Figure: per cell type a row of small panels, one per edge, each op's
    softmax(alpha) over the epochs."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    types = [t for t in space.cell_types if t in weights]
    per_row = min(space.num_edges, 7)
    grid_rows = math.ceil(space.num_edges / per_row)
    fig = Figure(figsize=(1.9 * per_row, 0.4 + 1.55 * grid_rows * len(types) + 0.5),
                 layout="constrained")  # fmt: skip
    fig.suptitle(title, fontsize=9)
    labels = edge_labels(space)
    axes = fig.subplots(grid_rows * len(types), per_row, squeeze=False, sharex=True)
    handles = {}
    for i, t in enumerate(types):
        w = np.asarray(weights[t], dtype=float)  # (epochs, edges, ops)
        for e in range(space.num_edges):
            ax = axes[i * grid_rows + e // per_row, e % per_row]
            for k, op in enumerate(space.ops[t][e]):
                color = tuple(c / 255 for c in _op_color(op))
                earlier = {_op_color(o) for o in space.ops[t][e][:k]}  # one colour per family:
                style = "--" if _op_color(op) in earlier else "-"  # the second one dashed
                (line,) = ax.plot(epochs, w[:, e, k], color=color, lw=1.0, ls=style)
                handles.setdefault(op, line)
            prefix = "" if t == "cell" else f"{t}: "
            ax.set_title(prefix + labels[e], fontsize=7)
            ax.tick_params(labelsize=6)
            ax.ticklabel_format(axis="y", useOffset=False)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        for e in range(space.num_edges, grid_rows * per_row):
            axes[i * grid_rows + e // per_row, e % per_row].axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("epoch", fontsize=7)
    fig.legend(list(handles.values()), list(handles), loc="outside lower center",
               ncol=min(len(handles), 8), fontsize=7)  # fmt: skip
    return fig


def tensorboard_images(space: spaces.SearchSpace, title: str = ""):
    """For `MetricsWriter(images=...)`: a search record -> {"alphas": its heat-map}; None
    without matplotlib (the run then logs scalars only)."""
    if not have_matplotlib():
        return None
    head = title or f"space {space.name}"

    def images(record) -> dict:
        if "alphas_softmax" not in record:
            return {}
        weights = {t: np.asarray(alphas_matrix(v)) for t, v in record["alphas_softmax"].items()}
        epoch = record.get("epoch", "?")
        return {"alphas": heatmap_figure(space, weights, f"{head}: softmax(alpha), epoch {epoch}")}

    return images


def write_alpha_plots(workdir: str, space: spaces.SearchSpace, *, title: str = "") -> list[str]:
    """Writes alphas.png and alpha_evolution.png from `<workdir>/metrics.jsonl`; returns
    their paths ([] when the log holds no alpha records). Needs matplotlib."""
    epochs, weights = read_alphas(os.path.join(workdir, "metrics.jsonl"))
    if not epochs:
        return []
    head = title or f"space {space.name}"
    paths = [os.path.join(workdir, ALPHAS_PNG), os.path.join(workdir, EVOLUTION_PNG)]
    last = {t: w[-1] for t, w in weights.items()}
    figs = (
        heatmap_figure(space, last, f"{head}: softmax(alpha) after epoch {epochs[-1]}"),
        evolution_figure(space, epochs, weights, f"{head}: softmax(alpha) per epoch"),
    )
    for fig, path in zip(figs, paths, strict=True):
        save_png(fig, path)
    return paths


def maybe_write_alpha_plots(workdir: str, space: spaces.SearchSpace, **kwargs) -> list[str]:
    """`write_alpha_plots` when matplotlib is importable, else one INFO line. A picture
    that fails is a warning, not the end of the run."""
    if not have_matplotlib():
        logger.info("No alpha pictures: matplotlib is not installed (pip install "
                    "'nas_jax[plots]')")  # fmt: skip
        return []
    try:
        paths = write_alpha_plots(workdir, space, **kwargs)
    except Exception as e:  # noqa: BLE001 - pictures are extras; the run goes on
        logger.warning("No alpha pictures: %s: %s", type(e).__name__, e)
        return []
    if paths:
        logger.info("Alpha pictures: %s", ", ".join(paths))
    return paths
