"""Architecture state: alphas plus the discretisation decisions, as one pytree.

Every field is a dict keyed by cell type ('normal'/'reduce', or 'cell' for NB201):
  alphas      float[E, K]  architecture parameters
  decided_op  int32[E]     the op chosen on each edge, -1 while undecided
  edge_kept   bool[E]      False once topology selection pruned the edge
  node_done   bool[P]      topology decided for each prunable node (DARTS: states 3, 4, 5;
                           an empty dict for NB201)

Mixing weights (SPEC 5.2): softmax(alpha); decided rows one-hot; pruned rows zero.
The `where` gives decided rows exactly zero gradient w.r.t. alpha, as in the reference.
All functions are pure and jittable with traced edge/op indices, so one compiled
function serves every decision.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from nas_jax import spaces

Weights = dict[str, jax.Array]


class ArchState(NamedTuple):
    alphas: Weights
    decided_op: dict[str, jax.Array]
    edge_kept: dict[str, jax.Array]
    node_done: dict[str, jax.Array]


def init_arch_state(key: jax.Array, space: spaces.SearchSpace, scale: float = 1e-3) -> ArchState:
    """Alphas ~ scale * N(0, 1) per entry (SPEC 3.3); nothing decided."""
    E, K, P = space.num_edges, space.num_ops, len(space.prunable_nodes)
    keys = jax.random.split(key, len(space.cell_types))
    alphas = {t: scale * jax.random.normal(k, (E, K)) for t, k in zip(space.cell_types, keys)}
    return ArchState(
        alphas=alphas,
        decided_op={t: jnp.full((E,), -1, jnp.int32) for t in space.cell_types},
        edge_kept={t: jnp.ones((E,), bool) for t in space.cell_types},
        # Empty for NB201 (no topology selection): orbax cannot save zero-size arrays.
        node_done={t: jnp.zeros((P,), bool) for t in space.cell_types} if P else {},
    )


def weights_from_alphas(
    alphas: Weights, decided_op: dict[str, jax.Array], edge_kept: dict[str, jax.Array]
) -> Weights:
    out = {}
    for t, alpha_ExK in alphas.items():
        K = alpha_ExK.shape[-1]
        decided_E = decided_op[t] >= 0
        onehot_ExK = jax.nn.one_hot(decided_op[t], K, dtype=alpha_ExK.dtype)
        w_ExK = jnp.where(decided_E[:, None], onehot_ExK, jax.nn.softmax(alpha_ExK, axis=-1))
        out[t] = w_ExK * edge_kept[t][:, None].astype(w_ExK.dtype)
    return out


def mixing_weights(arch: ArchState) -> Weights:
    """The effective weights every forward uses (SPEC 5.2)."""
    return weights_from_alphas(arch.alphas, arch.decided_op, arch.edge_kept)


def remove_op(weights: Weights, cell_type: str, edge, op) -> Weights:
    """Zero one op of one edge, without renormalising the row (SPEC 5.3)."""
    w_ExK = weights[cell_type]
    E, K = w_ExK.shape
    mask_ExK = 1.0 - jax.nn.one_hot(edge, E)[:, None] * jax.nn.one_hot(op, K)[None, :]
    return {**weights, cell_type: w_ExK * mask_ExK.astype(w_ExK.dtype)}


def remove_edge(weights: Weights, cell_type: str, edge) -> Weights:
    """Zero the whole row of one edge (topology scoring, SPEC 7.4)."""
    w_ExK = weights[cell_type]
    keep_E = 1.0 - jax.nn.one_hot(edge, w_ExK.shape[0], dtype=w_ExK.dtype)
    return {**weights, cell_type: w_ExK * keep_E[:, None]}


def op_removal_variants(weights: Weights, cell_type: str, edge) -> Weights:
    """K variants (leading axis) of the weights, variant k with op k of `edge` removed."""
    K = weights[cell_type].shape[-1]
    return jax.vmap(lambda k: remove_op(weights, cell_type, edge, k))(jnp.arange(K))


def edge_removal_variants(weights: Weights, cell_type: str, edges_V: jax.Array) -> Weights:
    """len(edges_V) variants, variant v with edge edges_V[v] removed."""
    return jax.vmap(lambda e: remove_edge(weights, cell_type, e))(jnp.asarray(edges_V))


def decide_op(arch: ArchState, cell_type: str, edge, op) -> ArchState:
    decided = {
        **arch.decided_op,
        cell_type: arch.decided_op[cell_type].at[edge].set(op),
    }
    return arch._replace(decided_op=decided)


def prune_node(
    arch: ArchState,
    space: spaces.SearchSpace,
    cell_type: str,
    node: int,
    keep: tuple[int, int],
) -> ArchState:
    """Keep two input edges (edge ids) of target state `node`; prune the others."""
    eids = space.node_edges[node]
    if node not in space.prunable_nodes:
        raise ValueError(f"State {node} is not prunable; prunable: {space.prunable_nodes}")
    if len(set(keep)) != 2 or not set(keep) <= set(eids):
        raise ValueError(f"keep={keep} must be two distinct input edges of state {node}: {eids}")
    kept = arch.edge_kept[cell_type]
    for e in eids:
        if e not in keep:
            kept = kept.at[e].set(False)
    pos = space.prunable_nodes.index(node)
    done = arch.node_done[cell_type].at[pos].set(True)
    return arch._replace(
        edge_kept={**arch.edge_kept, cell_type: kept},
        node_done={**arch.node_done, cell_type: done},
    )


def undecided_nodes(arch: ArchState, space: spaces.SearchSpace, cell_type: str) -> list[int]:
    if not space.prunable_nodes:
        return []
    done = arch.node_done[cell_type]
    return [n for i, n in enumerate(space.prunable_nodes) if not bool(done[i])]
