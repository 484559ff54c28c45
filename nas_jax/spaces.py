"""Search spaces as data: a family (the cell graph, `nas_jax.families`) and the candidate
ops of every edge. Column order of the op lists is the alpha column order.

The registry `SPACES` holds the reference's spaces: DARTS `s1`-`s5` (SPEC 2.2; `s5` is
the reference's 7-op space) and `darts8` (with `none`), and `nb201` (SPEC 2.3). A new
space of an existing family is one `SPACES.register(...)` of a `SearchSpace`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from nas_jax import families
from nas_jax.families import darts, nb201
from nas_jax.registry import Registry


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """A cell search space.

    Attributes:
      name: registry name.
      family: the name of its `families.Family` ('darts' or 'nb201').
      cell_types: names of the cell types that own an alpha matrix.
      edges: (target_state, input_state) per edge id (the family's).
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
        """Target states whose inputs topology selection prunes to two (DARTS family)."""
        if not families.get_family(self.family).prunes_nodes:
            return ()
        return tuple(t for t, eids in self.node_edges.items() if len(eids) > 2)

    def edge_name(self, edge: int) -> str:
        """The edge as outputs name it: 'node 0 <- c_{k-2}' (DARTS), 'node 3 <- node 1'
        (NB201); states named as in the cell pictures (`families.Family.state_name`)."""
        return families.get_family(self.family).edge_name(edge)

    def state_name(self, state: int) -> str:
        return families.get_family(self.family).state_name(state)

    def reduction_edges(self) -> tuple[bool, ...]:
        """Per edge: True if it reads a cell input (stride 2 inside a reduction cell)."""
        return tuple(j < 2 for _, j in self.edges)


def _uniform(cell_types: Sequence[str], edges, ops: Sequence[str]) -> dict:
    return {t: tuple(tuple(ops) for _ in edges) for t in cell_types}


DARTS_CELL_TYPES = darts.CELL_TYPES
_DARTS_EDGES = darts.EDGES

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
NB201_OPS = nb201.OPS

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


SPACES: Registry[SearchSpace] = Registry("search space")
for _space in (
    _darts_space("s1", {"normal": _S1_NORMAL, "reduce": _S1_REDUCE}),
    _darts_space("s2", _uniform(DARTS_CELL_TYPES, _DARTS_EDGES, ("skip_connect", "sep_conv_3x3"))),
    _darts_space(
        "s3", _uniform(DARTS_CELL_TYPES, _DARTS_EDGES, ("none", "skip_connect", "sep_conv_3x3"))
    ),
    _darts_space("s4", _uniform(DARTS_CELL_TYPES, _DARTS_EDGES, ("noise", "sep_conv_3x3"))),
    _darts_space("s5", _uniform(DARTS_CELL_TYPES, _DARTS_EDGES, S5_OPS)),
    _darts_space("darts8", _uniform(DARTS_CELL_TYPES, _DARTS_EDGES, DARTS8_OPS)),
    SearchSpace(
        "nb201", "nb201", ("cell",), nb201.EDGES, _uniform(("cell",), nb201.EDGES, NB201_OPS)
    ),
):
    SPACES.register(_space.name, _space)


def get_space(name: str) -> SearchSpace:
    return SPACES.get(name)
