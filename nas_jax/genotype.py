"""Genotypes of every family: parsing their text and JSON forms, the magnitude read-out
of a supernet (SPEC 7.9), genotype.json, and the registry of published genotypes.

The family-specific pieces (types, text forms, derivation rules) live in
`nas_jax.families`; this module dispatches on the family.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping

from nas_jax import families
from nas_jax.families.darts import Genotype, derive_cell
from nas_jax.families.darts import parse_text as parse_darts_text
from nas_jax.families.nb201 import NB201Genotype
from nas_jax.families.nb201 import parse_text as parse_nb201_text

AnyGenotype = Genotype | NB201Genotype  # the built-in families' types, for annotations

__all__ = [
    "AnyGenotype",
    "Genotype",
    "NB201Genotype",
    "derive_cell",
    "derive_genotype",
    "from_json_dict",
    "get_genotype",
    "parse_darts_text",
    "parse_nb201_text",
    "parse_text",
    "registry",
    "save_json",
]


def from_json_dict(d: Mapping):
    """The "genotype" object of a genotype.json (its "family" key picks the parser)."""
    name = d.get("family", "darts" if "normal" in d else "nb201")
    return families.get_family(name).from_json(d)


def parse_text(text: str):
    """Parses the text form of any family."""
    for _, fam in families.FAMILIES.items():
        if fam.is_text(text):
            return fam.parse_text(text)
    raise ValueError(
        f"Not a genotype text (DARTS 'Genotype(...)' or NB201 '|op~0|+...'): {text[:80]!r}"
    )


@functools.cache
def registry() -> dict:
    """Published genotypes by name (`genotypes.json`: the reference's `genotypes.py`)."""
    path = os.path.join(os.path.dirname(__file__), "genotypes.json")
    with open(path) as f:
        return {k: from_json_dict(v) for k, v in json.load(f).items()}


def get_genotype(spec: str):
    """Resolves a registered name, a path to a genotype JSON file, or a text form."""
    if spec in registry():
        return registry()[spec]
    if spec.endswith(".json") or os.path.isfile(spec):
        if not os.path.isfile(spec):
            raise ValueError(f"Genotype file {spec!r} does not exist")
        try:
            with open(spec) as f:
                d = json.load(f)
            return from_json_dict(d.get("genotype", d))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"Genotype file {spec!r} is not a genotype JSON: "
                             f"{type(e).__name__}: {e}") from None  # fmt: skip
    if any(fam.is_text(spec) for _, fam in families.FAMILIES.items()):
        return parse_text(spec)
    raise ValueError(
        f"Unknown genotype {spec[:80]!r}: not a registered name, a .json file or a genotype "
        f"text. Registered ({len(registry())}, in nas_jax/genotypes.json): "
        f"{', '.join(list(registry())[:6])}, ..."
    )


def derive_genotype(space, weights: Mapping):
    """Magnitude genotype from mixing weights (softmax(alpha), or effective PT weights)."""
    return families.get_family(space.family).derive(space, weights)


def save_json(genotype, path: str, **extra) -> None:
    """Writes {'genotype': ..., 'text': ..., **extra} atomically."""
    payload = {"genotype": genotype.to_json_dict(), "text": genotype.to_text(), **extra}
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=2)
    os.replace(tmp, path)
