"""Selectors: how an architecture is read off a trained supernet (SPEC 7), a registry.

A `Selector` says how one op of an edge is decided and how a node's inputs are kept. The
selection stage (`selection.run`) owns everything around it: the schedule of decision
events, tuning between them, checkpoints, the decision log. A selector sees the
supernet through a `SelectionContext`, which scores removals with the batched scorer.

Built in:
  pt         perturbation-based selection: the op (edge) whose removal hurts the
             supernet's accuracy most is kept (SPEC 7.3, 7.4)
  pt_mag     the same schedule and tuning, decisions by the largest softmax(alpha)
  magnitude  no progressive decisions: the DARTS read-out of the searched supernet

Adding one: `SELECTORS.register(name, Selector(name, decide_op, decide_node))`, from any
module; `config.select.method=name` then selects with it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from nas_jax import arch, families, spaces
from nas_jax.registry import Registry
from nas_jax.selection import decisions, scoring

# (ctx, state, key, cell_type, edge) -> (op index, record fields, state)
DecideOp = Callable[..., tuple[int, dict, Any]]
# (ctx, state, key, cell_type, node) -> ((edge id, edge id) kept, record fields, state)
DecideNode = Callable[..., tuple[tuple[int, int], dict, Any]]


@dataclasses.dataclass(frozen=True)
class Selector:
    """decide_op / decide_node: None for both = a read-out selector (no decision events:
    the genotype is the magnitude rule on the searched supernet). The record fields they
    return go into decisions.jsonl (JSON values)."""

    name: str
    decide_op: DecideOp | None
    decide_node: DecideNode | None
    description: str = ""

    @property
    def progressive(self) -> bool:
        return self.decide_op is not None


SELECTORS: Registry[Selector] = Registry("selector")


@dataclasses.dataclass
class SelectionContext:
    """What a selector may read: the space, `config.select` (`options`), the search
    method's mixing weights, and scoring passes over the held-out half.

    Every scoring method takes the pass's `key` (batch order and augmentation) and
    returns `(PassScores, state)`: `state` with the BN running statistics the pass wrote
    back (`select.write_back_stats`), else unchanged.
    """

    space: spaces.SearchSpace
    options: Any
    mixing: Callable[[arch.ArchState], dict]
    scorer: scoring.Scorer
    split: tuple[jax.Array, jax.Array]
    num_batches: int

    def weights(self, arch_state: arch.ArchState) -> dict:
        return self.mixing(arch_state)

    @staticmethod
    def _variables(state) -> dict:
        return {"params": state.params, "batch_stats": state.batch_stats}

    def score_ops(self, state, key, cell_type: str, edge: int):
        """Every op of `edge` removed in turn (entry k = op k removed)."""
        s = self.scorer.score_ops(self._variables(state), self.weights(state.arch), cell_type,
                                  edge, self.split, key, self.num_batches)  # fmt: skip
        return s, state._replace(batch_stats=s.batch_stats)

    def score_edges(self, state, key, cell_type: str, edges: Sequence[int]):
        """Each edge of `edges` removed alone (entries follow `edges`)."""
        s = self.scorer.score_edges(
            self._variables(state), self.weights(state.arch), cell_type, edges, self.split, key,
            self.num_batches,
        )  # fmt: skip
        return s, state._replace(batch_stats=s.batch_stats)

    def evaluate(self, state, key, arch_state: arch.ArchState | None = None):
        """(acc %, loss) of the supernet itself (or with `arch_state`'s decisions)."""
        a = state.arch if arch_state is None else arch_state
        return self.scorer.evaluate(self._variables(state), self.weights(a), self.split, key,
                                    self.num_batches)  # fmt: skip


# --------------------------------------------------------------------------------------
# PT (SPEC 7.3, 7.4)
# --------------------------------------------------------------------------------------


def pt_decide_op(ctx: SelectionContext, state, key, cell_type: str, edge: int):
    s, state = ctx.score_ops(state, jax.random.fold_in(key, 0), cell_type, edge)
    op = decisions.choose_op(s.acc, s.loss, ctx.options.criterion)
    return op, {"acc": s.acc.tolist(), "loss": s.loss.tolist()}, state


def pt_decide_node(ctx: SelectionContext, state, key, cell_type: str, node: int):
    """Pass r of the decision reads the batches of fold_in(key, r)."""
    eids = ctx.space.node_edges[node]
    passes = 0

    def score(survivors):  # one pass per round, fresh batches each
        nonlocal state, passes
        s, state = ctx.score_edges(state, jax.random.fold_in(key, passes), cell_type, survivors)
        passes += 1
        return s.acc, s.loss

    crit = ctx.options.edge_criterion
    if ctx.options.topology == "iterative":
        kept, rounds = decisions.eliminate_edges(score, eids, crit)
    else:
        acc, loss = score(tuple(eids))
        kept = decisions.keep_two_one_shot(eids, acc, loss, crit)
        rounds = [{"candidates": list(eids), "acc": acc.tolist(), "loss": loss.tolist()}]
    return kept, {"acc": rounds[0]["acc"], "loss": rounds[0]["loss"], "rounds": rounds}, state


# --------------------------------------------------------------------------------------
# PT-Mag (SPEC 7.10): PT's schedule and tuning, magnitude decisions
# --------------------------------------------------------------------------------------


def magnitude_decide_op(ctx: SelectionContext, state, key, cell_type: str, edge: int):
    w = np.asarray(jax.nn.softmax(state.arch.alphas[cell_type][edge]))
    names = ctx.space.edge_ops(cell_type, edge)
    skip_none = families.get_family(ctx.space.family).magnitude_skips_none
    op = decisions.magnitude_op(w, names, skip_none=skip_none)
    return op, {"softmax_alpha": w.tolist()}, state


def magnitude_decide_node(ctx: SelectionContext, state, key, cell_type: str, node: int):
    eids = ctx.space.node_edges[node]
    w = np.asarray(jax.nn.softmax(state.arch.alphas[cell_type], axis=-1))[list(eids)]
    kept = decisions.magnitude_edges(eids, w, [ctx.space.edge_ops(cell_type, e) for e in eids])
    return kept, {"softmax_alpha": w.tolist()}, state


for _selector in (
    Selector("pt", pt_decide_op, pt_decide_node, "perturbation-based selection (PT)"),
    Selector("pt_mag", magnitude_decide_op, magnitude_decide_node,
             "PT's schedule and tuning, decisions by softmax(alpha)"),
    Selector("magnitude", None, None, "the DARTS read-out of the searched supernet"),
):  # fmt: skip
    SELECTORS.register(_selector.name, _selector)
