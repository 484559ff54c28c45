"""Architecture selection on a searched supernet (SPEC 7): perturbation-based
selection (PT) with progressive tuning, PT-Mag, the DARTS magnitude read-out, and any
selector registered in `SELECTORS`.

genotype = run_select(config, workdir, search_state, setup, search_data)

Pieces, usable alone:
  scoring    batched removal scores (vmap over variants; one compilation per kind)
  decisions  op / topology rules on score tables (ties as in the reference)
  schedule   events, tuning epochs and the edge order drawn from a key
  selectors  the selector registry and the context selectors score through
  tuning     the fresh-optimizer tuning step between decisions
"""

from nas_jax.selection.decisions import (
    CRITERIA,
    TOPOLOGIES,
    choose_op,
    edge_to_delete,
    eliminate_edges,
    keep_two_one_shot,
    magnitude_edges,
    magnitude_op,
)
from nas_jax.selection.run import (
    SelectKeys,
    SelectResult,
    decide,
    make_context,
    run_select,
    select,
    validate_config,
)
from nas_jax.selection.schedule import (
    EDGE_ORDERS,
    Decision,
    Event,
    decision_epochs,
    edge_order,
    make_plan,
    tuning_epochs,
)
from nas_jax.selection.scoring import (
    DataProtocol,
    PassScores,
    Scorer,
    draw_batch,
    make_variant_scorer,
    score_edge_removals,
    score_op_removals,
)
from nas_jax.selection.selectors import SELECTORS, SelectionContext, Selector

__all__ = [
    "CRITERIA",
    "EDGE_ORDERS",
    "TOPOLOGIES",
    "DataProtocol",
    "Decision",
    "Event",
    "PassScores",
    "SELECTORS",
    "Scorer",
    "SelectKeys",
    "SelectResult",
    "SelectionContext",
    "Selector",
    "choose_op",
    "decide",
    "decision_epochs",
    "draw_batch",
    "edge_order",
    "edge_to_delete",
    "eliminate_edges",
    "keep_two_one_shot",
    "magnitude_edges",
    "magnitude_op",
    "make_context",
    "make_plan",
    "make_variant_scorer",
    "run_select",
    "score_edge_removals",
    "score_op_removals",
    "select",
    "tuning_epochs",
    "validate_config",
]
