"""Search spaces as data: edge numbering and op lists match SPEC 2."""

import pytest

from nas_jax import spaces


def test_darts_edge_table():
    space = spaces.get_space("s5")
    targets = [t for t, _ in space.edges]
    inputs = [j for _, j in space.edges]
    assert targets == [2, 2, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 5]
    assert inputs == [0, 1, 0, 1, 2, 0, 1, 2, 3, 0, 1, 2, 3, 4]
    # Stride-2 edges of a reduction cell (SPEC 2.1).
    stride2 = [e for e, r in enumerate(space.reduction_edges()) if r]
    assert stride2 == [0, 1, 2, 3, 5, 6, 9, 10]
    assert space.node_edges[3] == (2, 3, 4) and space.node_edges[5] == (
        9,
        10,
        11,
        12,
        13,
    )
    assert space.prunable_nodes == (3, 4, 5)


def test_nb201_edge_table():
    space = spaces.get_space("nb201")
    assert space.edges == ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
    assert space.cell_types == ("cell",)
    assert space.ops["cell"][0] == (
        "none",
        "skip_connect",
        "nor_conv_1x1",
        "nor_conv_3x3",
        "avg_pool_3x3",
    )
    assert space.prunable_nodes == ()


@pytest.mark.parametrize(
    "name,num_ops,has_none",
    [
        ("s1", 2, False),
        ("s2", 2, False),
        ("s3", 3, True),
        ("s4", 2, False),
        ("s5", 7, False),
        ("darts8", 8, True),
        ("nb201", 5, True),
    ],
)
def test_space_shapes(name, num_ops, has_none):
    space = spaces.get_space(name)
    assert space.num_ops == num_ops
    assert space.has_none == has_none
    for t in space.cell_types:
        assert all(len(ops) == num_ops for ops in space.ops[t])


def test_s1_per_edge_ops():
    s1 = spaces.get_space("s1")
    assert s1.edge_ops("normal", 5) == ("max_pool_3x3", "skip_connect")
    assert s1.edge_ops("normal", 13) == ("dil_conv_3x3", "dil_conv_5x5")
    assert s1.edge_ops("reduce", 1) == ("max_pool_3x3", "dil_conv_3x3")
    assert s1.edge_ops("reduce", 6) == ("max_pool_3x3", "sep_conv_3x3")
    assert s1.ops["normal"] != s1.ops["reduce"]


def test_s5_column_order_and_darts8():
    assert spaces.get_space("s5").ops["normal"][0][2] == "skip_connect"
    assert spaces.get_space("darts8").ops["normal"][0] == ("none",) + spaces.S5_OPS


def test_unknown_space_lists_accepted():
    with pytest.raises(ValueError, match=r"'s9'.*accepted: s1, s2, s3, s4, s5, darts8, nb201"):
        spaces.get_space("s9")
