"""Pictures with matplotlib (the `plots` extra): the cell drawing, its title and label
layout, the alpha heat-map and evolution, and the fallback to Pillow without it."""

import itertools
import json
import sys

import numpy as np
import pytest
from PIL import Image

from nas_jax import genotype, plots, spaces
from nas_jax.search import run as search_run
from nas_jax.selection import draw

NB201_TEXT = (
    "|nor_conv_3x3~0|+|skip_connect~0|none~1|+|avg_pool_3x3~0|nor_conv_1x1~1|skip_connect~2|"
)
SPECS = ["DARTS_V2", NB201_TEXT]
ALL_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"  # a cell without edges


def _png_size(path):
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


@pytest.mark.parametrize("spec", [*SPECS, ALL_NONE])
def test_matplotlib_draws_the_cells(spec, tmp_path):
    pytest.importorskip("matplotlib")
    g = genotype.get_genotype(spec)
    png = draw.write_cells(g, str(tmp_path), renderer="matplotlib", method="pt", space="s5")
    width, height = _png_size(png)
    assert 500 <= width <= 2000 and 150 <= height <= 2000, (width, height)
    assert not list(tmp_path.glob("*.tmp"))  # atomic writes leave no temporaries
    assert 'label="Selected cell (method pt, space s5)\\n' in (tmp_path / "cells.dot").read_text()


@pytest.mark.parametrize("spec", SPECS)
def test_title_names_the_method_and_the_whole_genotype(spec):
    g = genotype.get_genotype(spec)
    head, *lines = draw.title_text(g, method="pt_mag", space="s3", width=60).split("\n")
    assert head == "Selected cell (method pt_mag, space s3)"
    assert all(len(line) <= 60 for line in lines)
    assert "".join(lines).replace(" ", "") == g.to_text().replace(" ", "")
    assert draw.title_text(g).split("\n")[0] == "Selected cell"


def _overlapping_pairs(points_and_ops):
    return [
        (p, q)
        for (p, a), (q, b) in itertools.combinations(points_and_ops, 2)
        if draw._boxes_overlap(p, q, draw.label_box(a), draw.label_box(b))
    ]


@pytest.mark.parametrize("spec", SPECS)
def test_labels_of_crossing_edges_do_not_overlap(spec):
    for cell, edges in draw.cell_edges(genotype.get_genotype(spec)).items():
        pos, arcs = draw.layout_cell(edges)
        labelled = [(a.label_xy, a.op) for a in arcs if a.op]
        assert len(labelled) == sum(1 for *_, op in edges if op)
        assert not _overlapping_pairs(labelled), cell
        for (p, _), (q, _) in itertools.combinations(labelled, 2):
            assert np.hypot(p[0] - q[0], p[1] - q[1]) > 0.1, cell
        for xy, op in labelled:  # no label on a node either
            assert not any(draw._boxes_overlap(xy, n, draw.label_box(op), (0.2, 0.2))
                           for n in pos.values()), (cell, op)  # fmt: skip


def test_labels_at_the_midpoints_would_overlap():
    """Negative control: every label at the middle of its curve collides for DARTS_V2,
    so the test above checks the placement, not a layout that never collides."""
    edges = draw.cell_edges(genotype.get_genotype("DARTS_V2"))["normal"]
    _, arcs = draw.layout_cell(edges)
    mids = [(draw._bezier(a.p0, a.ctrl, a.p1, 0.5), a.op) for a in arcs if a.op]
    assert _overlapping_pairs(mids)


def _write_metrics(workdir, space, epochs=3):
    rng = np.random.default_rng(0)
    with open(workdir / "metrics.jsonl", "w") as f:
        for epoch in range(epochs):
            alphas = {}
            for t in space.cell_types:
                z = rng.normal(size=(space.num_edges, space.num_ops)) * (epoch + 1)
                w = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
                alphas[t] = w.round(5).tolist()
            f.write(json.dumps({"epoch": epoch, "train_loss": 1.0, "alphas_softmax": alphas}))
            f.write("\n")


@pytest.mark.parametrize("name", ["nb201", "s1"])
def test_alpha_pictures_from_a_metrics_log(name, tmp_path):
    pytest.importorskip("matplotlib")
    space = spaces.SPACES.get(name)
    _write_metrics(tmp_path, space)
    epochs, weights = plots.read_alphas(str(tmp_path / "metrics.jsonl"))
    assert epochs == [0, 1, 2]
    assert {t: w.shape for t, w in weights.items()} == {
        t: (3, space.num_edges, space.num_ops) for t in space.cell_types
    }
    paths = plots.write_alpha_plots(str(tmp_path), space)
    assert [p.rsplit("/", 1)[1] for p in paths] == ["alphas.png", "alpha_evolution.png"]
    for p in paths:
        width, height = _png_size(p)
        assert width >= 300 and height >= 200
    assert not list(tmp_path.glob("*.tmp"))


def test_edge_labels_follow_the_space_edges():
    assert plots.edge_labels(spaces.SPACES.get("nb201")) == [
        "node 1 <- node 0", "node 2 <- node 0", "node 2 <- node 1", "node 3 <- node 0",
        "node 3 <- node 1", "node 3 <- node 2",
    ]  # fmt: skip
    darts = plots.edge_labels(spaces.SPACES.get("s5"))
    assert darts[:3] == ["node 0 <- $c_{k-2}$", "node 0 <- $c_{k-1}$", "node 1 <- $c_{k-2}$"]
    assert darts[-1] == "node 3 <- node 2" and len(darts) == 14


def test_named_and_list_alpha_records_read_alike(tmp_path):
    """metrics.jsonl names every weight ({edge: {op: w}}); records of earlier versions
    (edges x ops lists) still draw."""
    space = spaces.SPACES.get("s1")  # two different ops per edge
    rng = np.random.default_rng(0)
    w = rng.dirichlet(np.ones(2), size=(2, 14))
    named = search_run.named_alphas(space, {"normal": w[0], "reduce": w[1]})
    assert list(named["normal"]) == [space.edge_name(e) for e in range(14)]
    assert list(named["normal"]["node 0 <- c_{k-2}"]) == list(space.edge_ops("normal", 0))
    assert named["reduce"]["node 3 <- node 2"][space.edge_ops("reduce", 13)[1]] == round(
        float(w[1, 13, 1]), 5
    )
    lines = [
        {"epoch": 0, "alphas_softmax": named},
        {"epoch": 1, "alphas_softmax": {"normal": w[0].tolist(), "reduce": w[1].tolist()}},
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    epochs, read = plots.read_alphas(str(tmp_path / "metrics.jsonl"))
    assert epochs == [0, 1] and read["reduce"].shape == (2, 14, 2)
    np.testing.assert_allclose(read["normal"][0], read["normal"][1], atol=5e-6)


def test_no_alpha_records_no_pictures(tmp_path):
    pytest.importorskip("matplotlib")
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 0, "train_loss": 1.0}\n')
    assert plots.write_alpha_plots(str(tmp_path), spaces.SPACES.get("nb201")) == []
    assert not list(tmp_path.glob("*.png"))


def test_without_matplotlib_pillow_draws_the_cells(monkeypatch, tmp_path):
    """Negative control: with matplotlib unimportable (and no graphviz), 'auto' falls
    back to Pillow, and the alpha pictures are skipped, not an error."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises
    monkeypatch.setattr(draw.shutil, "which", lambda _: None)
    assert not draw.have_matplotlib()
    g = genotype.get_genotype(NB201_TEXT)
    (tmp_path / "auto").mkdir(), (tmp_path / "pillow").mkdir()
    draw.write_cells(g, str(tmp_path / "auto"), method="pt")
    draw.write_cells(g, str(tmp_path / "pillow"), renderer="pillow")
    with (
        Image.open(tmp_path / "auto/cells.png") as a,
        Image.open(tmp_path / "pillow/cells.png") as b,
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    space = spaces.SPACES.get("nb201")
    _write_metrics(tmp_path, space)
    assert plots.maybe_write_alpha_plots(str(tmp_path), space) == []
    assert not (tmp_path / "alphas.png").exists()
