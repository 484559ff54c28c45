"""Search spaces as data: the cell graph and the candidate ops of every edge.

DARTS family (SPEC 2.1/2.2): 4 intermediate nodes, 14 edges, node i+2 takes one
mixed edge from every earlier state. NAS-Bench-201 (SPEC 2.3): 4 nodes, 6 edges,
output = node 3. Column order of the op lists is the alpha column order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

DARTS_STEPS = 4
DARTS_CONCAT = (2, 3, 4, 5)


def _darts_edges() -> tuple[tuple[int, int], ...]:
    """(target_state, input_state) per edge id, outer loop over nodes (SPEC 2.1)."""
    return tuple((node + 2, j) for node in range(DARTS_STEPS) for j in range(node + 2))


def _nb201_edges() -> tuple[tuple[int, int], ...]:
    """(target, input) per edge id = position of 'i<-j' in sorted key order."""
    keys = sorted(f"{i}<-{j}" for i in range(1, 4) for j in range(i))
    return tuple((int(k[0]), int(k[-1])) for k in keys)


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """A cell search space.

    Attributes:
      name: registry name.
      family: 'darts' or 'nb201'.
      cell_types: names of the cell types that own an alpha matrix.
      edges: (target_state, input_state) per edge id.
      ops: per cell type, per edge, the op names (all edges have num_ops ops).
    """

    name: str
    family: str
    cell_types: tuple[str, ...]
    edges: tuple[tuple[int, int], ...]
    ops: dict[str, tuple[tuple[str, ...], ...]]

    def __hash__(self):  # modules holding a space must be hashable (jit static args)
        ops = tuple((t, self.ops[t]) for t in self.cell_types)
        return hash((self.name, self.family, self.cell_types, self.edges, ops))

    @property
    def num_edges(self) -> int:
        return len(self.edges)

    @property
    def num_ops(self) -> int:
        return len(self.ops[self.cell_types[0]][0])

    def edge_ops(self, cell_type: str, edge: int) -> tuple[str, ...]:
        return self.ops[cell_type][edge]

    @property
    def has_none(self) -> bool:
        return any("none" in e for t in self.cell_types for e in self.ops[t])

    @property
    def node_edges(self) -> dict[int, tuple[int, ...]]:
        """Edge ids entering each target state, in edge-id (input) order."""
        out: dict[int, list[int]] = {}
        for eid, (target, _) in enumerate(self.edges):
            out.setdefault(target, []).append(eid)
        return {k: tuple(v) for k, v in out.items()}

    @property
    def prunable_nodes(self) -> tuple[int, ...]:
        """Target states that have more than two inputs (topology selection)."""
        if self.family != "darts":
            return ()
        return tuple(t for t, eids in self.node_edges.items() if len(eids) > 2)


def _uniform(cell_types: Sequence[str], edges, ops: Sequence[str]) -> dict:
    return {t: tuple(tuple(ops) for _ in edges) for t in cell_types}


DARTS_CELL_TYPES = ("normal", "reduce")
_DARTS_EDGES = _darts_edges()

S5_OPS = (
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)
DARTS8_OPS = ("none",) + S5_OPS
NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")

# S1 differs per edge (SPEC 2.2 table); column order matters for alpha indexing.
_S1_NORMAL = (
    ("skip_connect", "dil_conv_3x3"),
    ("skip_connect", "dil_conv_5x5"),
    ("skip_connect", "dil_conv_5x5"),
    ("skip_connect", "sep_conv_3x3"),
    ("skip_connect", "dil_conv_3x3"),
    ("max_pool_3x3", "skip_connect"),
    ("skip_connect", "sep_conv_3x3"),
    ("skip_connect", "sep_conv_3x3"),
    ("skip_connect", "dil_conv_3x3"),
    ("skip_connect", "sep_conv_3x3"),
    ("max_pool_3x3", "skip_connect"),
    ("skip_connect", "dil_conv_3x3"),
    ("dil_conv_3x3", "dil_conv_5x5"),
    ("dil_conv_3x3", "dil_conv_5x5"),
)
_S1_REDUCE = (
    ("max_pool_3x3", "avg_pool_3x3"),
    ("max_pool_3x3", "dil_conv_3x3"),
    ("max_pool_3x3", "avg_pool_3x3"),
    ("max_pool_3x3", "avg_pool_3x3"),
    ("skip_connect", "dil_conv_5x5"),
    ("max_pool_3x3", "avg_pool_3x3"),
    ("max_pool_3x3", "sep_conv_3x3"),
    ("skip_connect", "dil_conv_3x3"),
    ("skip_connect", "dil_conv_5x5"),
    ("max_pool_3x3", "avg_pool_3x3"),
    ("max_pool_3x3", "avg_pool_3x3"),
    ("skip_connect", "dil_conv_5x5"),
    ("skip_connect", "dil_conv_5x5"),
    ("skip_connect", "dil_conv_5x5"),
)


def _darts_space(name: str, ops: dict) -> SearchSpace:
    return SearchSpace(name, "darts", DARTS_CELL_TYPES, _DARTS_EDGES, ops)


SPACES: dict[str, SearchSpace] = {
    "s1": _darts_space("s1", {"normal": _S1_NORMAL, "reduce": _S1_REDUCE}),
    "s2": _darts_space(
        "s2", _uniform(DARTS_CELL_TYPES, _DARTS_EDGES, ("skip_connect", "sep_conv_3x3"))
    ),
    "s3": _darts_space(
        "s3",
        _uniform(DARTS_CELL_TYPES, _DARTS_EDGES, ("none", "skip_connect", "sep_conv_3x3")),
    ),
    "s4": _darts_space("s4", _uniform(DARTS_CELL_TYPES, _DARTS_EDGES, ("noise", "sep_conv_3x3"))),
    "s5": _darts_space("s5", _uniform(DARTS_CELL_TYPES, _DARTS_EDGES, S5_OPS)),
    "darts8": _darts_space("darts8", _uniform(DARTS_CELL_TYPES, _DARTS_EDGES, DARTS8_OPS)),
    "nb201": SearchSpace(
        "nb201",
        "nb201",
        ("cell",),
        _nb201_edges(),
        _uniform(("cell",), range(6), NB201_OPS),
    ),
}


def get_space(name: str) -> SearchSpace:
    try:
        return SPACES[name]
    except KeyError:
        raise ValueError(
            f"Unknown search space {name!r}; accepted: {', '.join(sorted(SPACES))}"
        ) from None


def reduction_edges(space: SearchSpace) -> tuple[bool, ...]:
    """Per edge: True if it reads a cell input (stride 2 inside a reduction cell)."""
    return tuple(j < 2 for _, j in space.edges)
