"""Cell pictures: `cells.dot` always; `cells.png` with graphviz `dot` if installed,
else matplotlib if importable, else skipped with a logged note."""

from __future__ import annotations

import os
import shutil
import subprocess

from nas_jax import genotype as genotype_lib
from nas_jax import spaces
from nas_jax.reporting import logger


def cell_edges(g: genotype_lib.AnyGenotype) -> dict[str, list[tuple[str, str, str]]]:
    """Per cell: (from, to, op) with DARTS inputs named c_{k-2}, c_{k-1} and nodes 0..3."""
    if isinstance(g, genotype_lib.NB201Genotype):
        edges = spaces.get_space("nb201").edges
        return {"cell": [(str(j), str(i), op) for (i, j), op in zip(edges, g.ops) if op != "none"]}
    names = ["c_{k-2}", "c_{k-1}"] + [str(i) for i in range(spaces.DARTS_STEPS)]
    out = {}
    for cell, pairs, concat in (
        ("normal", g.normal, g.normal_concat),
        ("reduce", g.reduce, g.reduce_concat),
    ):
        edges = [(names[j], str(i // 2), op) for i, (op, j) in enumerate(pairs)]
        edges += [(names[c], "c_{k}", "") for c in concat]
        out[cell] = edges
    return out


def to_dot(g: genotype_lib.AnyGenotype) -> str:
    lines = ["digraph cells {", "  rankdir=LR;"]
    for cell, edges in cell_edges(g).items():
        lines.append(f'  subgraph "cluster_{cell}" {{ label="{cell}";')
        for a, b, op in edges:
            label = f' [label="{op}"]' if op else ""
            lines.append(f'    "{cell}:{a}" -> "{cell}:{b}"{label};')
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _matplotlib_png(g, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = cell_edges(g)
    fig, axes = plt.subplots(1, len(cells), figsize=(6 * len(cells), 4), squeeze=False)
    for ax, (cell, edges) in zip(axes[0], cells.items()):
        nodes = list(dict.fromkeys(n for a, b, _ in edges for n in (a, b)))
        pos = {n: (i, (i % 2) * 0.6) for i, n in enumerate(nodes)}
        for a, b, op in edges:
            (x0, y0), (x1, y1) = pos[a], pos[b]
            ax.annotate("", (x1, y1), (x0, y0), arrowprops={"arrowstyle": "->"})
            ax.text((x0 + x1) / 2, (y0 + y1) / 2, op, fontsize=7, ha="center")
        for n, (x, y) in pos.items():
            ax.text(x, y, n, ha="center", va="center", bbox={"boxstyle": "round", "fc": "w"})
        ax.set_title(cell)
        ax.axis("off")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def write_cells(g: genotype_lib.AnyGenotype, workdir: str) -> str | None:
    """Writes cells.dot and, if a renderer exists, cells.png; returns the png path."""
    dot_path, png_path = os.path.join(workdir, "cells.dot"), os.path.join(workdir, "cells.png")
    with open(dot_path, "w") as f:
        f.write(to_dot(g))
    if shutil.which("dot"):
        subprocess.run(["dot", "-Tpng", dot_path, "-o", png_path], check=True)
        return png_path
    try:
        _matplotlib_png(g, png_path)
        return png_path
    except ImportError:
        logger.info(
            "cells.png skipped: neither graphviz `dot` nor matplotlib is installed "
            "(cells.dot written)"
        )
        return None
