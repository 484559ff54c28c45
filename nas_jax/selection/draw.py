"""Cell pictures: `cells.dot` always; `cells.png` drawn by graphviz `dot` when it is
installed, else by matplotlib (the optional `plots` extra) when it is importable, else by
Pillow (a core dependency)."""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from typing import NamedTuple

from nas_jax import families
from nas_jax import genotype as genotype_lib
from nas_jax.reporting import logger


def cell_edges(g: genotype_lib.AnyGenotype) -> dict[str, list[tuple[str, str, str]]]:
    """Per cell: (from, to, op), as the genotype's family names its states."""
    return families.family_of(g).cell_edges(g)


def title_text(
    g: genotype_lib.AnyGenotype,
    method: str | None = None,
    space: str | None = None,
    width: int = 100,
) -> str:
    """The picture's title: what chose the cell (method, space), then the genotype text
    wrapped to lines of at most `width` characters."""
    what = ", ".join(f"{k} {v}" for k, v in (("method", method), ("space", space)) if v)
    head = f"Selected cell ({what})" if what else "Selected cell"
    return "\n".join([head, *textwrap.wrap(g.to_text(), width, break_on_hyphens=False)])


def to_dot(g: genotype_lib.AnyGenotype, title: str | None = None) -> str:
    lines = ["digraph cells {", "  rankdir=LR;"]
    if title:
        label = title.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        lines.append(f'  labelloc=t; fontsize=12; label="{label}";')
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


# ------------------------------------------------------------------- matplotlib drawing

NODE_R = 0.2  # node radius, in layout units (one unit between node columns)
LABEL_FONT = 7  # points
UNIT_IN = 1.35  # inches per layout unit: the label boxes below assume it
_CANDIDATE_T = (0.5, 0.38, 0.62, 0.28, 0.72, 0.2, 0.8, 0.45, 0.55, 0.33, 0.67)


class Arc(NamedTuple):
    """One drawn edge: endpoints, the control point of its quadratic curve, its op and
    where its label sits (None for the unlabelled concat edges)."""

    a: str
    b: str
    op: str
    p0: tuple[float, float]
    ctrl: tuple[float, float]
    p1: tuple[float, float]
    label_xy: tuple[float, float] | None


def _bezier(p0, c, p1, t: float) -> tuple[float, float]:
    return tuple((1 - t) ** 2 * p0[i] + 2 * (1 - t) * t * c[i] + t * t * p1[i] for i in (0, 1))


def label_box(op: str) -> tuple[float, float]:
    """Half width and half height of an op label's box, in layout units (about 0.6 em
    per character, plus the box padding)."""
    pt_per_unit = UNIT_IN * 72
    return ((0.6 * len(op) + 0.8) * LABEL_FONT / 2 / pt_per_unit,
            1.6 * LABEL_FONT / 2 / pt_per_unit)  # fmt: skip


def _boxes_overlap(p, q, hp, hq) -> bool:
    return abs(p[0] - q[0]) < hp[0] + hq[0] and abs(p[1] - q[1]) < hp[1] + hq[1]


def layout_cell(edges) -> tuple[dict[str, tuple[float, float]], list[Arc]]:
    """Node positions (left to right: the cell inputs, the nodes in order, the output)
    and one curve per edge. Edges spanning more than one column bow away from the row
    (from the upper input upwards, the lower one downwards, else alternating, further
    for longer spans); each label takes the first point along its curve whose box
    overlaps no label placed before and no node."""
    order = _node_order(edges)
    inputs = [n for n in order if n.startswith("c_{k-")]
    # DARTS: the two cell inputs share the first column, one above the other.
    two_inputs = len(inputs) > 1
    pos = {n: (0.0, 0.7 - 1.4 * i) for i, n in enumerate(inputs if two_inputs else [])}
    rest = order[len(pos) :]
    pos.update({n: (float(i + two_inputs), 0.0) for i, n in enumerate(rest)})
    arcs, placed = [], []
    node_box = (NODE_R, NODE_R)
    for k, (a, b, op) in enumerate(edges):
        p0, p1 = pos[a], pos[b]
        span = round(abs(p1[0] - p0[0]))
        side = {inputs[0]: 1, inputs[-1]: -1}.get(a) if two_inputs else None
        bow = (side or (1 if k % 2 else -1)) * (0.0 if span <= 1 else 0.12 + 0.1 * span)
        mid = ((p0[0] + p1[0]) / 2, (p0[1] + p1[1]) / 2)
        dx, dy = p1[0] - p0[0], p1[1] - p0[1]
        norm = max((dx * dx + dy * dy) ** 0.5, 1e-9)
        nx, ny = (-dy / norm, dx / norm) if dx >= 0 else (dy / norm, -dx / norm)  # upwards
        ctrl = (mid[0] + 2 * bow * nx, mid[1] + 2 * bow * ny)  # apex `bow` off the chord
        label_xy = None
        if op:
            half = label_box(op)
            best, best_score = None, -1.0
            for t in _CANDIDATE_T:
                xy = _bezier(p0, ctrl, p1, t)
                hits = sum(_boxes_overlap(xy, q, half, hq) for q, hq in placed)
                hits += sum(_boxes_overlap(xy, q, half, node_box) for q in pos.values())
                score = -hits + min((abs(xy[0] - q[0]) + abs(xy[1] - q[1]) for q, _ in placed),
                                    default=1.0) * 1e-3  # fmt: skip
                if hits == 0:
                    best = xy
                    break
                if score > best_score:
                    best, best_score = xy, score
            label_xy = best
            placed.append((best, half))
        arcs.append(Arc(a, b, op, p0, ctrl, p1, label_xy))
    return pos, arcs


def _y_span(pos, arcs, margin: float = 0.12) -> tuple[float, float]:
    """The vertical extent of a cell's nodes, curves and labels, plus a margin."""
    ys = [y + d for _, y in pos.values() for d in (-NODE_R, NODE_R)]
    ys += [_bezier(a.p0, a.ctrl, a.p1, t)[1] for a in arcs for t in (0.25, 0.5, 0.75)]
    ys += [a.label_xy[1] + d * label_box(a.op)[1] for a in arcs if a.label_xy for d in (-1, 1)]
    if not ys:  # a cell without edges (every op 'none')
        return -0.5, 0.5
    return min(ys) - margin, max(ys) + margin


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _node_text(n: str) -> str:
    return f"${n}$" if n.startswith("c_{") else n


def render_matplotlib(g: genotype_lib.AnyGenotype, path: str, title: str | None = None) -> None:
    """Draws the cells with matplotlib: one panel per cell type, nodes left to right,
    each edge a curve coloured by its op family with its label on a white box where no
    other label is (`layout_cell`), and the title (method and genotype text) on top."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Circle, FancyArrowPatch

    cells = cell_edges(g)
    layouts = {cell: layout_cell(edges) for cell, edges in cells.items()}
    xs = [x for pos, _ in layouts.values() for x, _ in pos.values()] or [0.0, 3.0]
    ncols = max(xs) - min(xs) + 1
    spans = {cell: _y_span(pos, arcs) for cell, (pos, arcs) in layouts.items()}
    heights = [hi - lo for lo, hi in spans.values()]
    title = title or title_text(g)
    title_in = 0.15 * (title.count("\n") + 1) + 0.15
    title_w = max(len(line) for line in title.split("\n")) * 0.6 * 8 / 72 + 0.3  # monospace 8pt
    fig = Figure(figsize=(max(ncols * UNIT_IN + 0.4, title_w), sum(heights) * UNIT_IN + title_in))
    fig.suptitle(title, fontsize=8, family="monospace", x=0.01, ha="left", y=0.995, va="top")
    top = 1 - title_in / fig.get_figheight()
    axes = fig.subplots(len(cells), 1, squeeze=False, height_ratios=heights)[:, 0]
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.0, top=top, hspace=0.0)
    for ax, (cell, (pos, arcs)) in zip(axes, layouts.items(), strict=True):
        ax.set_aspect("equal")
        ax.set_xlim(min(xs) - 0.45, max(xs) + 0.45)
        ax.set_ylim(*spans[cell])
        ax.axis("off")
        ax.text(0.0, 0.5, cell if cell == "cell" else f"{cell}\ncell", transform=ax.transAxes,
                fontsize=9, fontweight="bold", va="center", ha="left")  # fmt: skip
        if not arcs:
            ax.text(0.5, 0.5, "no edges (every op 'none')", transform=ax.transAxes, fontsize=8,
                    ha="center", va="center")  # fmt: skip
        for arc in arcs:
            color = tuple(c / 255 for c in _op_color(arc.op))
            rad = 0.0
            dx, dy = arc.p1[0] - arc.p0[0], arc.p1[1] - arc.p0[1]
            if dx or dy:  # arc3's control point: mid + rad * (dy, -dx)
                mid = ((arc.p0[0] + arc.p1[0]) / 2, (arc.p0[1] + arc.p1[1]) / 2)
                off = (arc.ctrl[0] - mid[0], arc.ctrl[1] - mid[1])
                rad = (off[0] * dy - off[1] * dx) / (dx * dx + dy * dy)
            ax.add_patch(FancyArrowPatch(
                arc.p0, arc.p1, connectionstyle=f"arc3,rad={rad}", arrowstyle="-|>",
                mutation_scale=9, color=color, lw=1.1 if arc.op else 0.8,
                linestyle="-" if arc.op else "--", shrinkA=NODE_R * UNIT_IN * 72,
                shrinkB=NODE_R * UNIT_IN * 72, zorder=1,
            ))  # fmt: skip
            if arc.label_xy is not None:
                ax.text(*arc.label_xy, arc.op, fontsize=LABEL_FONT, color=color, ha="center",
                        va="center", zorder=3,
                        bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": color,
                              "lw": 0.5})  # fmt: skip
        for n, xy in pos.items():
            ax.add_patch(Circle(xy, NODE_R, fc=(0.96, 0.96, 0.96), ec="black", lw=0.8, zorder=2))
            ax.text(*xy, _node_text(n), fontsize=8, ha="center", va="center", zorder=4)
    tmp = path + ".tmp"
    fig.savefig(tmp, format="png", dpi=110)
    os.replace(tmp, path)


def write_cells(g: genotype_lib.AnyGenotype, workdir: str, renderer: str = "auto", *,
                method: str | None = None, space: str | None = None) -> str:  # fmt: skip
    """Writes cells.dot and cells.png (atomically); returns the png path.

    renderer: 'auto' (graphviz `dot` when installed, else matplotlib when importable,
    else Pillow), 'dot', 'matplotlib' or 'pillow'. method, space: named in the title
    (with the genotype text) of the dot and matplotlib pictures."""
    dot_path, png_path = os.path.join(workdir, "cells.dot"), os.path.join(workdir, "cells.png")
    title = title_text(g, method, space)
    with open(dot_path + ".tmp", "w") as f:
        f.write(to_dot(g, title))
    os.replace(dot_path + ".tmp", dot_path)
    if renderer == "auto":
        renderer = "dot" if shutil.which("dot") else "matplotlib" if have_matplotlib() else "pillow"
    if renderer == "dot":
        subprocess.run(["dot", "-Tpng", dot_path, "-o", png_path + ".tmp"], check=True)
        os.replace(png_path + ".tmp", png_path)
    elif renderer == "matplotlib":
        render_matplotlib(g, png_path, title)
    elif renderer == "pillow":
        render_png(g, png_path)
    else:
        raise ValueError(f"renderer={renderer!r}: expected 'auto', 'dot', 'matplotlib' or 'pillow'")
    logger.info("Cell pictures: %s, %s", dot_path, png_path)
    return png_path
