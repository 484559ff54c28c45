"""Cell pictures: `cells.dot` always; `cells.png` drawn by graphviz `dot` when it is
installed, else by Pillow (a core dependency)."""

from __future__ import annotations

import os
import shutil
import subprocess

from nas_jax import families
from nas_jax import genotype as genotype_lib
from nas_jax.reporting import logger


def cell_edges(g: genotype_lib.AnyGenotype) -> dict[str, list[tuple[str, str, str]]]:
    """Per cell: (from, to, op), as the genotype's family names its states."""
    return families.family_of(g).cell_edges(g)


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


_OP_COLORS = {  # one colour per op family, so two pictures compare at a glance
    "skip_connect": (60, 120, 216),
    "sep_conv": (214, 96, 77),
    "dil_conv": (230, 160, 40),
    "max_pool": (90, 160, 90),
    "avg_pool": (60, 170, 170),
    "nor_conv": (214, 96, 77),
    "noise": (150, 150, 150),
    "": (120, 120, 120),
}


def _op_color(op: str) -> tuple[int, int, int]:
    return _OP_COLORS.get(op.rsplit("_", 1)[0] if op[-1:].isdigit() else op, (120, 120, 120))


def _node_order(edges) -> list[str]:
    """Inputs first, then nodes in topological (numeric) order, the cell output last."""
    nodes = list(dict.fromkeys(n for a, b, _ in edges for n in (a, b)))

    def rank(n):  # c_{k-2} before c_{k-1}
        return (
            (0, -int(n[-2])) if n.startswith("c_{k-") else (2, 0) if n == "c_{k}" else (1, int(n))
        )

    return sorted(nodes, key=rank)


def render_png(g: genotype_lib.AnyGenotype, path: str) -> None:
    """Draws the cells with Pillow: nodes left to right, one row per cell type, each
    edge an arc labelled with its op (arcs over longer spans bow further, so labels
    of parallel edges do not overlap)."""
    from PIL import Image, ImageDraw, ImageFont

    cells = cell_edges(g)
    col_w, row_h, margin, r = 150, 320, 40, 24
    columns = [[n for n in _node_order(e) if not n.startswith("c_{k-")] for e in cells.values()]
    width = margin * 2 + col_w * max(len(c) for c in columns)
    img = Image.new("RGB", (width, row_h * len(cells)), "white")
    d, font = ImageDraw.Draw(img), ImageFont.load_default()
    for row, (cell, edges) in enumerate(cells.items()):
        order = _node_order(edges)
        y0 = row * row_h + row_h // 2 + 20
        # DARTS: the two cell inputs share the first column, one above the other.
        inputs = [n for n in order if n.startswith("c_{k-")]
        pos = {n: (margin, y0 + (i * 2 - 1) * 70) for i, n in enumerate(inputs)}
        pos.update({n: (margin + (i + bool(inputs)) * col_w, y0)
                    for i, n in enumerate(order[len(inputs):])})  # fmt: skip
        d.text(
            (10, row * row_h + 8),
            "cell" if cell == "cell" else f"{cell} cell",
            fill="black",
            font=font,
        )
        for k, (a, b, op) in enumerate(edges):
            (xa, ya), (xb, yb) = pos[a], pos[b]
            span = abs(pos[b][0] - pos[a][0]) // col_w
            # From the upper input bow up, from the lower one down, else alternate.
            side = {inputs[0]: -1, inputs[-1]: 1}.get(a) if inputs else None
            bow = (side or (-1 if k % 2 else 1)) * (0 if span <= 1 else 30 * span)
            mx, my = (xa + xb) / 2, (ya + yb) / 2 + bow
            pts = [((1 - t) ** 2 * xa + 2 * (1 - t) * t * mx + t * t * xb,
                    (1 - t) ** 2 * ya + 2 * (1 - t) * t * my + t * t * yb)
                   for t in (i / 24 for i in range(25))]  # fmt: skip
            color = _op_color(op)
            d.line(pts, fill=color, width=2)
            (px, py), (qx, qy) = pts[-4], pts[-1]  # arrowhead at the target's rim
            norm = max(((qx - px) ** 2 + (qy - py) ** 2) ** 0.5, 1e-6)
            ux, uy = (qx - px) / norm, (qy - py) / norm
            tx, ty = qx - ux * r, qy - uy * r
            d.polygon([(tx, ty), (tx - 10 * ux - 5 * uy, ty - 10 * uy + 5 * ux),
                       (tx - 10 * ux + 5 * uy, ty - 10 * uy - 5 * ux)], fill=color)  # fmt: skip
            if op:
                lx, ly = pts[12]
                box = d.textbbox((lx, ly), op, font=font, anchor="mm")
                d.rectangle(box, fill="white")
                d.text((lx, ly), op, fill=color, font=font, anchor="mm")
        for n, (x, y) in pos.items():
            d.ellipse((x - r, y - r, x + r, y + r), fill=(245, 245, 245), outline="black")
            d.text((x, y), n, fill="black", font=font, anchor="mm")
    tmp = path + ".tmp"
    img.save(tmp, format="PNG")
    os.replace(tmp, path)


def write_cells(g: genotype_lib.AnyGenotype, workdir: str, renderer: str = "auto") -> str:
    """Writes cells.dot and cells.png (atomically); returns the png path.

    renderer: 'auto' (graphviz `dot` when installed, else Pillow), 'dot' or 'pillow'."""
    dot_path, png_path = os.path.join(workdir, "cells.dot"), os.path.join(workdir, "cells.png")
    with open(dot_path + ".tmp", "w") as f:
        f.write(to_dot(g))
    os.replace(dot_path + ".tmp", dot_path)
    if renderer == "dot" or (renderer == "auto" and shutil.which("dot")):
        subprocess.run(["dot", "-Tpng", dot_path, "-o", png_path + ".tmp"], check=True)
        os.replace(png_path + ".tmp", png_path)
    else:
        render_png(g, png_path)
    logger.info("Cell pictures: %s, %s", dot_path, png_path)
    return png_path
