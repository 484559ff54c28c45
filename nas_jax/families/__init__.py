"""Space families: what a cell topology means to every stage of the library.

A family (DARTS, NAS-Bench-201) is one `Family` entry in `FAMILIES`: its cell graph,
its genotype type with text and JSON forms, the magnitude rule that reads a genotype
off mixing weights, its supernet and evaluation-network builders, how its cells are
drawn, and the few rules that differ between families in selection and evaluation.
Search spaces (`nas_jax.spaces`) name a family and give the op lists of its edges.

Adding a family: one module that builds a `Family` and registers it, imported at the
bottom of this file (or from user code before the run starts).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from nas_jax.registry import Registry


@dataclasses.dataclass(frozen=True)
class Family:
    """Attributes:
    name: registry name, also the genotype JSON's "family" value.
    edges: (target_state, input_state) per edge id; the alpha row order.
    genotype_type: the class of its genotypes (`to_text()`, `to_json_dict()`).
    is_text: whether a string is (meant to be) this family's genotype text form.
    parse_text: text form -> genotype; ValueError naming the problem.
    from_json: the "genotype" object of a genotype.json -> genotype.
    derive: (space, mixing weights per cell type) -> genotype, the magnitude rule.
    cell_edges: genotype -> {cell: [(from, to, op)]} for drawing.
    build_supernet: (space, *, C, layers, num_classes, nb201_cells) -> search network.
    build_network: (genotype, *, C, layers, num_classes, auxiliary, imagenet) -> the
        discrete network; `layers` is the family's depth parameter.
    network_size: evaluate config section -> (C, layers) of `build_network`.
    network_defaults: (C, layers) of the family's standard evaluation network.
    prunes_nodes: topology selection keeps two inputs of every node with more.
    magnitude_skips_none: magnitude read-outs ignore `none` (DARTS, SPEC 7.9).
    final_tune_epochs: PT tuning epochs after the last decision event (SPEC 7.6).
    auxiliary_head: its evaluation network can have the auxiliary head.
    benchmark_lookup: its cells can be looked up in a tabular benchmark (NB201).
    min_layers: the fewest cells (`layers`) of a network with every cell type in it.
    cell_inputs: names of the states that are the cell's inputs (DARTS: the two previous
        cells' outputs); the states after them are the nodes, numbered from 0 as in the
        cell pictures. Outputs name states with `state_name` and edges with `edge_name`.
    """

    name: str
    edges: tuple[tuple[int, int], ...]
    genotype_type: type
    is_text: Callable[[str], bool]
    parse_text: Callable[[str], Any]
    from_json: Callable[[Mapping], Any]
    derive: Callable[[Any, Mapping], Any]
    cell_edges: Callable[[Any], dict[str, list[tuple[str, str, str]]]]
    build_supernet: Callable[..., Any]
    build_network: Callable[..., Any]
    network_size: Callable[[Any], tuple[int, int]]
    network_defaults: tuple[int, int]
    prunes_nodes: bool
    magnitude_skips_none: bool
    final_tune_epochs: int
    auxiliary_head: bool
    benchmark_lookup: bool = False
    min_layers: int = 1
    cell_inputs: tuple[str, ...] = ()

    def state_name(self, state: int) -> str:
        """'c_{k-1}' for a cell input, 'node 2' for an intermediate node."""
        n = len(self.cell_inputs)
        return self.cell_inputs[state] if state < n else f"node {state - n}"

    def edge_name(self, edge: int) -> str:
        """'node 0 <- c_{k-2}': the edge's target state, then its input state."""
        target, source = self.edges[edge]
        return f"{self.state_name(target)} <- {self.state_name(source)}"


FAMILIES: Registry[Family] = Registry("space family")


def get_family(name: str) -> Family:
    return FAMILIES.get(name)


def family_of(genotype) -> Family:
    """The family whose genotype type `genotype` is."""
    for _, fam in FAMILIES.items():
        if isinstance(genotype, fam.genotype_type):
            return fam
    raise TypeError(f"{type(genotype).__name__} is not the genotype type of any family")


# The built-in families register themselves.
from nas_jax.families import darts, nb201  # noqa: E402, F401
