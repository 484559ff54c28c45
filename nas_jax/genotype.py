"""Genotypes: DARTS-family cells and NAS-Bench-201 cells, their text and JSON forms,
the magnitude derivation (SPEC 7.9) and the registry of published genotypes."""

from __future__ import annotations

import ast
import functools
import json
import os
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from nas_jax import spaces

Pair = tuple[str, int]


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


AnyGenotype = Genotype | NB201Genotype


def _make_darts(normal, normal_concat, reduce, reduce_concat) -> Genotype:
    def pairs(ps):
        out = tuple((str(op), int(j)) for op, j in ps)
        if len(out) != 2 * spaces.DARTS_STEPS:
            raise ValueError(f"A DARTS cell needs 8 (op, input) pairs, got {len(out)}")
        for i, (op, j) in enumerate(out):
            if not 0 <= j < i // 2 + 2:
                raise ValueError(f"Pair {i} ({op!r}, {j}) reads a state that does not exist yet")
        return out

    return Genotype(pairs(normal), tuple(normal_concat), pairs(reduce), tuple(reduce_concat))


def _literal(node: ast.expr):
    # DARTS prints concat as range(2, 6) in some versions.
    if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "range":
        return list(range(*[ast.literal_eval(a) for a in node.args]))
    return ast.literal_eval(node)


def parse_darts_text(text: str) -> Genotype:
    """Parses `Genotype(normal=[...], normal_concat=[...], reduce=[...], reduce_concat=[...])`
    without eval."""
    try:
        call = ast.parse(text.strip(), mode="eval").body
        if not (isinstance(call, ast.Call) and getattr(call.func, "id", None) == "Genotype"):
            raise ValueError("not a Genotype(...) call")
        kwargs = {kw.arg: _literal(kw.value) for kw in call.keywords}
        return _make_darts(**kwargs)
    except (SyntaxError, ValueError, TypeError) as e:
        raise ValueError(f"Cannot parse DARTS genotype text {text[:80]!r}: {e}") from None


def parse_nb201_text(text: str) -> NB201Genotype:
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
                if op not in spaces.NB201_OPS:
                    raise ValueError(f"unknown op {op!r} (accepted: {', '.join(spaces.NB201_OPS)})")
                ops.append(op)
    except ValueError as e:
        raise ValueError(f"Cannot parse NB201 arch string {text!r}: {e}") from None
    return NB201Genotype(tuple(ops))


def from_json_dict(d: Mapping) -> AnyGenotype:
    family = d.get("family", "darts" if "normal" in d else "nb201")
    if family == "nb201":
        if "arch" in d:
            return parse_nb201_text(d["arch"])
        return NB201Genotype(tuple(d["ops"]))
    if family == "darts":
        return _make_darts(d["normal"], d["normal_concat"], d["reduce"], d["reduce_concat"])
    raise ValueError(f"Unknown genotype family {family!r}; accepted: darts, nb201")


def parse_text(text: str) -> AnyGenotype:
    """Parses either text form."""
    text = text.strip()
    if text.startswith("Genotype("):
        return parse_darts_text(text)
    if text.startswith("|"):
        return parse_nb201_text(text)
    raise ValueError(f"Not a genotype text (DARTS 'Genotype(...)' or NB201 '|op~0|+...'): {text!r}")


@functools.cache
def registry() -> dict[str, Genotype]:
    path = os.path.join(os.path.dirname(__file__), "genotypes.json")
    with open(path) as f:
        return {k: from_json_dict(v) for k, v in json.load(f).items()}


def get_genotype(spec: str) -> AnyGenotype:
    """Resolves a registered name, a path to a genotype JSON file, or a text form."""
    if spec in registry():
        return registry()[spec]
    if spec.endswith(".json") or os.path.isfile(spec):
        if not os.path.isfile(spec):
            raise ValueError(f"Genotype file {spec!r} does not exist")
        with open(spec) as f:
            d = json.load(f)
        return from_json_dict(d.get("genotype", d))
    if spec.strip().startswith(("Genotype(", "|")):
        return parse_text(spec)
    raise ValueError(
        f"Unknown genotype {spec!r}: not a registered name, a .json file or a genotype text. "
        f"Registered: {', '.join(registry())}"
    )


# --------------------------------------------------------------------------------------
# Magnitude derivation (SPEC 7.9)
# --------------------------------------------------------------------------------------


def derive_darts_cell(weights_ExK: np.ndarray, edge_ops: tuple[tuple[str, ...], ...]) -> tuple:
    """DARTS rule: per node keep the 2 strongest incoming edges (max non-`none` weight,
    stable sort, ties keep the lower input), then the largest non-`none` op (ties keep
    the earliest column). Pairs are emitted strongest edge first."""
    w = np.asarray(weights_ExK, dtype=np.float64)
    gene, start = [], 0
    for node in range(spaces.DARTS_STEPS):
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


def derive_genotype(space: spaces.SearchSpace, weights: Mapping[str, np.ndarray]) -> AnyGenotype:
    """Magnitude genotype from mixing weights (softmax(alpha), or effective PT weights)."""
    if space.family == "nb201":
        w = np.asarray(weights["cell"])
        return NB201Genotype(tuple(space.ops["cell"][e][int(np.argmax(w[e]))] for e in range(6)))
    concat = spaces.DARTS_CONCAT
    normal = derive_darts_cell(weights["normal"], space.ops["normal"])
    reduce = derive_darts_cell(weights["reduce"], space.ops["reduce"])
    return Genotype(normal, concat, reduce, concat)


def save_json(genotype: AnyGenotype, path: str, **extra) -> None:
    """Writes {'genotype': ..., 'text': ..., **extra} atomically."""
    payload = {"genotype": genotype.to_json_dict(), "text": genotype.to_text(), **extra}
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=2)
    os.replace(tmp, path)
