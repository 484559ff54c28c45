"""The DARTS family (SPEC 2.1, 4.1, 4.2, 7.9): two cell types, 4 intermediate nodes,
14 edges (node i+2 takes one mixed edge from every earlier state), cells of 8
(op, input) pairs, two inputs kept per node."""

from __future__ import annotations

import ast
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from nas_jax.families import FAMILIES, Family

STEPS = 4
CONCAT = (2, 3, 4, 5)
CELL_TYPES = ("normal", "reduce")
# (target_state, input_state) per edge id, outer loop over nodes (SPEC 2.1).
EDGES = tuple((node + 2, j) for node in range(STEPS) for j in range(node + 2))

Pair = tuple[str, int]
MAX_TEXT = 2000  # the longest published DARTS genotype text is ~400 characters


class Genotype(NamedTuple):
    """A DARTS-family cell pair; pairs 2i, 2i+1 feed state i+2."""

    normal: tuple[Pair, ...]
    normal_concat: tuple[int, ...]
    reduce: tuple[Pair, ...]
    reduce_concat: tuple[int, ...]

    def to_text(self) -> str:
        def pairs(ps):
            return "[" + ", ".join(f"({op!r}, {j})" for op, j in ps) + "]"

        return (
            f"Genotype(normal={pairs(self.normal)}, normal_concat={list(self.normal_concat)}, "
            f"reduce={pairs(self.reduce)}, reduce_concat={list(self.reduce_concat)})"
        )

    def to_json_dict(self) -> dict:
        return {
            "family": "darts",
            "normal": [list(p) for p in self.normal],
            "normal_concat": list(self.normal_concat),
            "reduce": [list(p) for p in self.reduce],
            "reduce_concat": list(self.reduce_concat),
        }


def make_genotype(normal, normal_concat, reduce, reduce_concat) -> Genotype:
    """A checked Genotype: 8 pairs per cell, each reading a state that exists."""

    from nas_jax.ops import OPS  # the op constructors (flax): imported when first needed

    def pairs(ps):
        out = tuple((str(op), int(j)) for op, j in ps)
        unknown = sorted({op for op, _ in out} - set(OPS))
        if unknown:
            raise ValueError(f"Unknown op {unknown[0][:40]!r}; accepted: {', '.join(OPS)}")
        if len(out) != 2 * STEPS:
            raise ValueError(f"A DARTS cell needs 8 (op, input) pairs, got {len(out)}")
        for i, (op, j) in enumerate(out):
            if not 0 <= j < i // 2 + 2:
                raise ValueError(f"Pair {i} ({op!r}, {j}) reads a state that does not exist yet")
        return out

    def concat(c):
        out = tuple(c)
        states = range(2, STEPS + 2)
        if (
            not out
            or len(set(out)) != len(out)
            or not all(isinstance(i, int) and not isinstance(i, bool) and i in states for i in out)
        ):
            raise ValueError(f"A concat lists distinct intermediate states {list(states)}, "
                             f"got {list(out)[:8]}")  # fmt: skip
        return out

    return Genotype(pairs(normal), concat(normal_concat), pairs(reduce), concat(reduce_concat))


def _literal(node: ast.expr):
    # DARTS prints concat as range(2, 6) in some versions.
    if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "range":
        r = range(*[ast.literal_eval(a) for a in node.args])
        if len(r) > STEPS + 2:  # before materialising it
            raise ValueError(f"{r} has {len(r)} states; a cell has {STEPS + 2}")
        return list(r)
    return ast.literal_eval(node)


def parse_text(text: str) -> Genotype:
    """Parses `Genotype(normal=[...], normal_concat=[...], reduce=[...], reduce_concat=[...])`
    without eval."""
    if len(text) > MAX_TEXT:
        raise ValueError(f"A DARTS genotype text has at most {MAX_TEXT} characters, got "
                         f"{len(text)}: {text[:60]!r}...")  # fmt: skip
    try:
        call = ast.parse(text.strip(), mode="eval").body
        if not (isinstance(call, ast.Call) and getattr(call.func, "id", None) == "Genotype"):
            raise ValueError("not a Genotype(...) call")
        kwargs = {kw.arg: _literal(kw.value) for kw in call.keywords}
        return make_genotype(**kwargs)
    except (SyntaxError, ValueError, TypeError) as e:
        raise ValueError(f"Cannot parse DARTS genotype text {text[:80]!r}: {e}") from None


def from_json(d: Mapping) -> Genotype:
    return make_genotype(d["normal"], d["normal_concat"], d["reduce"], d["reduce_concat"])


def derive_cell(weights_ExK: np.ndarray, edge_ops: tuple[tuple[str, ...], ...]) -> tuple:
    """DARTS rule: per node keep the 2 strongest incoming edges (max non-`none` weight,
    stable sort, ties keep the lower input), then the largest non-`none` op (ties keep
    the earliest column). Pairs are emitted strongest edge first."""
    w = np.asarray(weights_ExK, dtype=np.float64)
    gene, start = [], 0
    for node in range(STEPS):
        n = node + 2
        usable = [[k for k, op in enumerate(edge_ops[start + j]) if op != "none"] for j in range(n)]
        strength = [max(w[start + j, k] for k in usable[j]) for j in range(n)]
        for j in sorted(range(n), key=lambda j: -strength[j])[:2]:
            k_best = None
            for k in usable[j]:
                if k_best is None or w[start + j, k] > w[start + j, k_best]:
                    k_best = k
            gene.append((edge_ops[start + j][k_best], j))
        start += n
    return tuple(gene)


def derive(space, weights: Mapping[str, np.ndarray]) -> Genotype:
    """The magnitude genotype of DARTS-family mixing weights (SPEC 7.9)."""
    normal = derive_cell(weights["normal"], space.ops["normal"])
    reduce = derive_cell(weights["reduce"], space.ops["reduce"])
    return Genotype(normal, CONCAT, reduce, CONCAT)


def cell_edges(g: Genotype) -> dict[str, list[tuple[str, str, str]]]:
    """Per cell: (from, to, op) with the inputs named c_{k-2}, c_{k-1} and nodes 0..3,
    then the concatenated nodes into c_{k} (no op)."""
    names = ["c_{k-2}", "c_{k-1}"] + [str(i) for i in range(STEPS)]
    out = {}
    for cell, pairs, concat in (
        ("normal", g.normal, g.normal_concat),
        ("reduce", g.reduce, g.reduce_concat),
    ):
        edges = [(names[j], str(i // 2), op) for i, (op, j) in enumerate(pairs)]
        edges += [(names[c], "c_{k}", "") for c in concat]
        out[cell] = edges
    return out


def build_supernet(space, *, C: int, layers: int, num_classes: int, **_):
    from nas_jax.supernet import DartsSupernet  # the networks import this module

    return DartsSupernet(space, C=C, layers=layers, num_classes=num_classes)


def build_network(g: Genotype, *, C: int, layers: int, num_classes: int, auxiliary: bool = True,
                  imagenet: bool = False):  # fmt: skip
    from nas_jax.networks import DartsEvalNetwork

    return DartsEvalNetwork(g, C, layers, num_classes, auxiliary, imagenet)


FAMILY = FAMILIES.register(
    "darts",
    Family(
        name="darts",
        edges=EDGES,
        genotype_type=Genotype,
        is_text=lambda text: text.strip().startswith("Genotype("),
        parse_text=parse_text,
        from_json=from_json,
        derive=derive,
        cell_edges=cell_edges,
        build_supernet=build_supernet,
        build_network=build_network,
        network_size=lambda ev: (ev["C"], ev["layers"]),
        network_defaults=(36, 20),
        prunes_nodes=True,
        magnitude_skips_none=True,
        final_tune_epochs=1,  # the reference tunes one epoch after the last event
        auxiliary_head=True,
        min_layers=3,  # reduction cells at L//3 and 2L//3: a normal cell needs L >= 3
        cell_inputs=("c_{k-2}", "c_{k-1}"),
    ),
)
