"""Cell pictures: cells.dot always, cells.png by graphviz or Pillow."""

import numpy as np
import pytest
from PIL import Image

from nas_jax import genotype
from nas_jax.selection import draw

NB201_TEXT = (
    "|nor_conv_3x3~0|+|skip_connect~0|none~1|+|avg_pool_3x3~0|nor_conv_1x1~1|skip_connect~2|"
)


def _pixels(path):
    with Image.open(path) as im:
        assert im.format == "PNG"
        return np.asarray(im.convert("RGB"))


@pytest.mark.parametrize("spec", ["DARTS_V2", NB201_TEXT])
def test_pillow_renderer_draws_every_op_colour(spec, tmp_path):
    g = genotype.get_genotype(spec)
    png = draw.write_cells(g, str(tmp_path), renderer="pillow")
    px = _pixels(png)
    assert px.shape[0] >= 300 and px.shape[1] >= 500
    colours = {tuple(c) for c in px.reshape(-1, 3)}
    ops = {op for edges in draw.cell_edges(g).values() for _, _, op in edges if op}
    for op in ops:  # each op family's colour appears (lines, arrowheads, labels)
        assert draw._op_color(op) in colours, op
    assert not list(tmp_path.glob("*.tmp"))  # atomic writes leave no temporaries
    dot = (tmp_path / "cells.dot").read_text()
    assert dot.startswith("digraph cells {") and dot.count("->") == sum(
        len(e) for e in draw.cell_edges(g).values()
    )


def test_different_cells_give_different_pictures(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    g = genotype.get_genotype(NB201_TEXT)
    draw.write_cells(g, str(a), renderer="pillow")
    draw.write_cells(g, str(b), renderer="pillow")
    np.testing.assert_array_equal(_pixels(a / "cells.png"), _pixels(b / "cells.png"))
    other = genotype.get_genotype(NB201_TEXT.replace("nor_conv_3x3~0", "avg_pool_3x3~0"))
    draw.write_cells(other, str(b), renderer="pillow")  # negative control
    assert not np.array_equal(_pixels(a / "cells.png"), _pixels(b / "cells.png"))
