"""The selection schedule (SPEC 7.5, 7.6, 7.8): which decisions happen at which
tuning epoch, and the edge order, drawn from an explicit key.

DARTS family: 14 op-decision events, then 3 node (topology) events; every event
decides normal then reduce. The reference tunes `interval` epochs after each event
except the last (1 epoch): 81 epochs for interval 5. NB201: 6 op events over
interval * 5 epochs (25 for interval 5), decisions at epochs 0, 5, 10, 15, 20, 24.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np

from nas_jax import families, spaces

EDGE_ORDERS = ("random", "fixed", "reverse")


class Decision(NamedTuple):
    kind: str  # 'op' (target = edge id) or 'node' (target = state index)
    cell_type: str
    target: int


class Event(NamedTuple):
    index: int
    epoch: int  # the tuning epoch at whose start the decisions happen
    decisions: tuple[Decision, ...]
    tune_epochs: int  # tuning epochs after this event


def tuning_epochs(num_events: int, interval: int, family: str) -> int:
    """Total tuning epochs: interval * (n - 1) plus the family's epochs after the last
    event (DARTS 1, NB201 0)."""
    if interval == 0 or num_events == 0:
        return 0
    return interval * (num_events - 1) + families.get_family(family).final_tune_epochs


def num_events(space: spaces.SearchSpace) -> int:
    """Decision events of a space: one per edge, then one per prunable node."""
    return space.num_edges + len(space.prunable_nodes)


def decision_epochs(num_events: int, interval: int, family: str) -> list[int]:
    """The reference's rule: decide at epochs where epoch % interval == 0 or epoch is
    the last one. interval 0 (no tuning): every event at epoch 0."""
    total = tuning_epochs(num_events, interval, family)
    if total == 0:
        return [0] * num_events
    epochs = [e for e in range(total) if e % interval == 0 or e == total - 1]
    if len(epochs) != num_events:
        raise ValueError(
            f"tune_epochs={interval} gives {len(epochs)} decision epochs for {num_events} "
            f"events in the {family} schedule (NB201 needs tune_epochs != 1)"
        )
    return epochs


def edge_order(key: jax.Array, items, how: str = "random") -> list[int]:
    """`items` in the order they are decided: a permutation drawn from `key`, ascending
    ('fixed') or descending ('reverse')."""
    items = list(items)
    if how == "random":
        perm = np.asarray(jax.random.permutation(key, len(items)))
        return [items[i] for i in perm]
    if how == "fixed":
        return sorted(items)
    if how == "reverse":
        return sorted(items, reverse=True)
    raise ValueError(f"Unknown edge order {how!r}; accepted: {', '.join(EDGE_ORDERS)}")


def make_plan(
    space: spaces.SearchSpace, key: jax.Array, *, interval: int, order: str = "random"
) -> list[Event]:
    """Every event of the selection phase. A pure function of the key: a resumed run
    rebuilds the same plan (unlike the reference, SPEC 7.7)."""
    op_orders, node_orders = [], []
    for i, t in enumerate(space.cell_types):
        op_orders.append(edge_order(jax.random.fold_in(key, i), range(space.num_edges), order))
        node_key = jax.random.fold_in(key, 1000 + i)
        node_orders.append(edge_order(node_key, space.prunable_nodes, order))
    steps: list[tuple[Decision, ...]] = []
    for j in range(space.num_edges):
        steps.append(tuple(Decision("op", t, o[j]) for t, o in zip(space.cell_types, op_orders)))
    for j in range(len(space.prunable_nodes)):
        steps.append(
            tuple(Decision("node", t, o[j]) for t, o in zip(space.cell_types, node_orders))
        )
    epochs = decision_epochs(len(steps), interval, space.family)
    total = tuning_epochs(len(steps), interval, space.family)
    ends = epochs[1:] + [total]
    return [Event(i, e, d, end - e) for i, (e, d, end) in enumerate(zip(epochs, steps, ends))]
