"""The NAS-Bench-201 family (SPEC 2.3, 4.3): one cell type, 4 nodes, 6 edges (every
earlier node feeds every later one), output = node 3; a genotype is one op per edge."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from nas_jax.families import FAMILIES, Family

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
# (target, input) per edge id = the position of 'i<-j' in sorted key order (the benchmark's).
EDGES = tuple(
    (int(k[0]), int(k[-1])) for k in sorted(f"{i}<-{j}" for i in range(1, 4) for j in range(i))
)


class NB201Genotype(NamedTuple):
    """A NAS-Bench-201 cell: one op per edge, in edge-id order (1<-0, 2<-0, 2<-1, ...)."""

    ops: tuple[str, ...]

    def to_text(self) -> str:
        nodes, eid = [], 0
        for i in range(1, 4):
            nodes.append("|" + "|".join(f"{self.ops[eid + j]}~{j}" for j in range(i)) + "|")
            eid += i
        return "+".join(nodes)

    def to_json_dict(self) -> dict:
        return {"family": "nb201", "arch": self.to_text()}


def parse_text(text: str) -> NB201Genotype:
    """Parses `|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`."""
    nodes = text.strip().split("+")
    ops = []
    try:
        if len(nodes) != 3:
            raise ValueError(f"expected 3 nodes, got {len(nodes)}")
        for i, node in enumerate(nodes, start=1):
            items = node.strip("|").split("|")
            if len(items) != i:
                raise ValueError(f"node {i} must have {i} inputs")
            for j, item in enumerate(items):
                op, src = item.split("~")
                if int(src) != j:
                    raise ValueError(f"node {i} input {j} is labelled ~{src}")
                if op not in OPS:
                    raise ValueError(f"unknown op {op!r} (accepted: {', '.join(OPS)})")
                ops.append(op)
    except ValueError as e:
        raise ValueError(f"Cannot parse NB201 arch string {text[:80]!r}: {e}") from None
    return NB201Genotype(tuple(ops))


def from_json(d: Mapping) -> NB201Genotype:
    return parse_text(d["arch"]) if "arch" in d else NB201Genotype(tuple(d["ops"]))


def derive(space, weights: Mapping[str, np.ndarray]) -> NB201Genotype:
    """The largest mixing weight of every edge, `none` included."""
    w = np.asarray(weights["cell"])
    return NB201Genotype(tuple(space.ops["cell"][e][int(np.argmax(w[e]))] for e in range(6)))


def cell_edges(g: NB201Genotype) -> dict[str, list[tuple[str, str, str]]]:
    return {"cell": [(str(j), str(i), op) for (i, j), op in zip(EDGES, g.ops) if op != "none"]}


def build_supernet(space, *, C: int, num_classes: int, nb201_cells: int = 5, **_):
    from nas_jax.supernet import NB201Supernet  # the networks import this module

    return NB201Supernet(space, C=C, N=nb201_cells, num_classes=num_classes)


def build_network(g: NB201Genotype, *, C: int, layers: int, num_classes: int, **_):
    from nas_jax.networks import NB201Network

    return NB201Network(g, C=C, N=layers, num_classes=num_classes)


FAMILY = FAMILIES.register(
    "nb201",
    Family(
        name="nb201",
        edges=EDGES,
        genotype_type=NB201Genotype,
        is_text=lambda text: text.strip().startswith("|"),
        parse_text=parse_text,
        from_json=from_json,
        derive=derive,
        cell_edges=cell_edges,
        build_supernet=build_supernet,
        build_network=build_network,
        network_size=lambda ev: (ev["nb201_C"], ev["nb201_cells"]),
        network_defaults=(16, 5),
        prunes_nodes=False,
        magnitude_skips_none=False,
        final_tune_epochs=0,
        auxiliary_head=False,
        benchmark_lookup=True,
    ),
)
