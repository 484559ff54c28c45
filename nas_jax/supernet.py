"""Functional weight-sharing supernets (SPEC 4.1, 4.3).

The mixing weights are an explicit input, one [edges, ops] array per cell type:
`{'normal': w_ExK, 'reduce': w_ExK}` for the DARTS family, `{'cell': w_ExK}` for
NAS-Bench-201. No architecture state lives in a module, so the same parameters can
be applied under `jax.vmap` to many weight variants at once.

A mixed edge computes sum_k w_k * op_k(x) for every op. The reference skips ops whose
weight is exactly 0 (SPEC 5.1); multiplying by 0 gives the same outputs and gradients
while keeping the weights traced (one compilation serves every decision).

The `none` op (`x * 0`) is not computed at all: its term w * (0 * x) is exactly zero
for finite x, and so are its contributions to the gradients of x and of w. (The
reference's `x.mul(0.)` would turn an inf in x into a NaN; a supernet whose states are
not finite has diverged either way.) Its backward fusions cost 150 ms of the NB201
weight step on XLA:CPU.

Every node goes through `fusion.materialize` (a fusion barrier on XLA:CPU, see there).

$NAS_JAX_EDGE_BATCHING=source (`edge_batching`) applies the edges of a cell that read the
same state with the same ops as one vmapped MixedOp; the parameters, outputs and
gradients are those of the per-edge form (the default).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nas_jax import ops, spaces
from nas_jax.kernels import materialize

ENV_VAR = "NAS_JAX_EDGE_BATCHING"
MODES = ("none", "source")
# Opt-in everywhere. On XLA:CPU (2-core AMD EPYC, jax 0.10.2, s5 C=16 L=3 cells, batch
# 64, `python -m nas_jax.bench --cases weight --spaces s5 --layers 3`) 'source' made the
# weight step slower: 2,430 vs 1,140 ms with the 'rows' tap backward (batched matmuls and
# reductions over the stacked edges run far below the unbatched ones' speed), for a
# compile of 89 s instead of 131 s; with 'chunks', 4,570 vs 3,630 ms (before `_fanout`).
# Not measured on an accelerator, where one kernel per group instead of one per edge
# may pay.
_BACKEND_DEFAULTS: dict[str, str] = {}
# Ops that draw from an RNG stream: their edges are applied one by one, so each keeps
# its own stream (a vmapped apply would need one key split per edge instead).
_RANDOM_OPS = frozenset({"noise"})


def default_edge_batching(backend: str | None = None) -> str:
    """Measured-best edge batching for `backend` (default: `jax.default_backend()`)."""
    return _BACKEND_DEFAULTS.get(backend or jax.default_backend(), "none")


def edge_batching(mode: str | None = None) -> str:
    """How a cell applies its mixed edges: 'source' (the edges that read the same state
    and have the same ops and stride run as one `vmap`ped MixedOp, see `_cell_nodes`) or
    'none' (one MixedOp call per edge). `mode`, else $NAS_JAX_EDGE_BATCHING, else
    `default_edge_batching()`. Read at trace time."""
    mode = mode or os.environ.get(ENV_VAR) or default_edge_batching()
    if mode not in MODES:
        raise ValueError(f"unknown edge batching {mode!r}; accepted: {', '.join(MODES)}")
    return mode


def reduction_layers(layers: int) -> tuple[int, int]:
    """Cell indices of the two reduction cells: floor(L/3), floor(2L/3)."""
    return layers // 3, 2 * layers // 3


class MixedOp(nn.Module):
    op_names: tuple[str, ...]
    C: int
    stride: int
    pool_bn: bool  # DARTS family: a non-affine BN after every pooling op (SPEC 3.1)

    @nn.compact
    def __call__(self, x, w_K, train: bool):
        out = 0.0
        for k, name in enumerate(self.op_names):  # params named by op: removable
            if name == "none" and len(self.op_names) > 1:
                continue  # w * (0 * x) adds exact zeros (see the module docstring)
            y = ops.make_op(name, self.C, self.stride, False, module_name=name)(x, train)
            if self.pool_bn and "pool" in name:
                y = ops.batch_norm(False, name=f"{name}_bn")(y, use_running_average=not train)
            out = out + w_K[k].astype(y.dtype) * y
        return out


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _fanout(x, n):
    """x stacked n times. The cotangent is summed back as n - 1 adds of slices, one
    fused loop: the reduce over the stacked axis that autodiff of a broadcast (or
    vmap of an unmapped input) gives ran 45 ms for one 4 x 64x32x32x32 sum on XLA:CPU."""
    return jnp.broadcast_to(x, (n, *x.shape))


def _fanout_fwd(x, n):
    return _fanout(x, n), None


def _fanout_bwd(n, _, ct):
    return (functools.reduce(jnp.add, [ct[i] for i in range(n)]),)


_fanout.defvjp(_fanout_fwd, _fanout_bwd)


def _batched_edges(cell, x, eids, op_names, C, stride, pool_bn, w_ExK, train):
    """Edges `eids` of `cell`, all reading `x` with the same ops and stride, as one
    vmapped MixedOp over the edges' own parameters (read from `cell`'s variables under
    their usual names, `edge{e}/...`). `x` enters stacked (`_fanout`), so each edge
    computes its own pools as the per-edge form does: leaving it unmapped shares them,
    but its cotangent is then a reduce over the stacked edges, slower on XLA:CPU than
    all that it saves. Updated running statistics are written back per edge.
    Returns {e: output}."""
    names = [f"edge{e}" for e in eids]
    params = cell.variables.get("params", {})
    stats = cell.variables.get("batch_stats", {})
    stacked = jax.tree.map(
        lambda *a: jnp.stack(a),
        *[{"params": params.get(n, {}), "batch_stats": stats.get(n, {})} for n in names],
    )
    op = MixedOp(op_names, C, stride, pool_bn, parent=None)

    def one(variables, x, w_K):
        if train:
            y, new = op.apply(variables, x, w_K, True, mutable=["batch_stats"])
            return y, new.get("batch_stats", {})
        return op.apply(variables, x, w_K, False), {}

    y_E, new_E = jax.vmap(one)(stacked, _fanout(x, len(eids)), w_ExK[np.asarray(eids)])
    for i, n in enumerate(names):
        new = jax.tree.map(lambda a: a[i], new_E)
        if new:  # raises like BatchNorm does if batch_stats is not mutable
            cell.put_variable("batch_stats", n, new)
    return {e: y_E[i] for i, e in enumerate(eids)}


def _cell_nodes(cell, states, edges, edge_ops, strides, C, pool_bn, w_ExK, train):
    """The mixed nodes of a cell: node t = sum of MixedOp(states[j]) over its edges
    (t, j), materialized, appended to `states` in target order (edge ids enter each
    node's sum in id order). Edges are MixedOp children named `edge{e}`; under
    `edge_batching() == 'source'` (not at init, which creates the parameters one edge
    at a time) the edges that read the same state with the same ops and stride are
    applied as one (`_batched_edges`), as soon as that state exists. The sums and
    parameters are the same either way."""
    targets: dict[int, list[int]] = {}
    for e, (t, _) in enumerate(edges):
        targets.setdefault(t, []).append(e)
    batched = edge_batching() == "source" and not cell.is_initializing()
    ys: dict[int, jax.Array] = {}

    def single(e):
        mixed = MixedOp(edge_ops[e], C, strides[e], pool_bn, name=f"edge{e}")
        return mixed(states[edges[e][1]], w_ExK[e], train)

    done = 0
    for t in sorted(targets):
        while batched and done < len(states):  # every edge reading a new state
            groups: dict[tuple, list[int]] = {}
            for e, (_, j) in enumerate(edges):
                if j == done:
                    groups.setdefault((edge_ops[e], strides[e]), []).append(e)
            for (op_names, stride), eids in groups.items():
                if len(eids) == 1 or _RANDOM_OPS.intersection(op_names):
                    ys.update({e: single(e) for e in eids})
                else:
                    ys.update(_batched_edges(cell, states[done], eids, op_names, C, stride,
                                             pool_bn, w_ExK, train))  # fmt: skip
            done += 1
        node = 0.0
        for e in targets[t]:
            node = node + (ys[e] if batched else single(e))
        states.append(materialize(node))
    return states


class DartsSearchCell(nn.Module):
    space: spaces.SearchSpace
    C: int
    reduction: bool
    reduction_prev: bool

    @nn.compact
    def __call__(self, s0, s1, w_ExK, train: bool):
        if self.reduction_prev:
            s0 = ops.FactorizedReduce(self.C, affine=False, name="preprocess0")(s0, train)
        else:
            s0 = ops.ReLUConvBN(self.C, 1, affine=False, name="preprocess0")(s0, train)
        s1 = ops.ReLUConvBN(self.C, 1, affine=False, name="preprocess1")(s1, train)
        cell_type = "reduce" if self.reduction else "normal"
        reads_input = spaces.reduction_edges(self.space)
        edges = self.space.edges
        edge_ops = [self.space.edge_ops(cell_type, e) for e in range(len(edges))]
        strides = [2 if self.reduction and reads_input[e] else 1 for e in range(len(edges))]
        states = _cell_nodes(self, [s0, s1], edges, edge_ops, strides, self.C, True, w_ExK, train)
        return jnp.concatenate([states[i] for i in spaces.DARTS_CONCAT], axis=-1)


class DartsSupernet(nn.Module):
    """DARTS-family search network: stem, L cells (reductions at L/3, 2L/3), classifier."""

    space: spaces.SearchSpace
    C: int = 16
    layers: int = 8
    num_classes: int = 10
    stem_multiplier: int = 3

    @nn.compact
    def __call__(self, x_BxHxWxC, weights: Mapping[str, jax.Array], *, train: bool):
        c_curr = self.stem_multiplier * self.C
        s = ops.conv(c_curr, 3, 1, 1, name="stem_conv")(x_BxHxWxC)
        s = ops.batch_norm(True, name="stem_bn")(s, use_running_average=not train)
        s0 = s1 = s
        c_curr, reduction_prev = self.C, False
        reductions = reduction_layers(self.layers)
        for i in range(self.layers):
            reduction = i in reductions
            if reduction:
                c_curr *= 2
            w = weights["reduce" if reduction else "normal"]
            cell = DartsSearchCell(self.space, c_curr, reduction, reduction_prev, name=f"cell{i}")
            s0, s1 = s1, cell(s0, s1, w, train)
            reduction_prev = reduction
        out = jnp.mean(s1, axis=(1, 2))
        return ops.dense(self.num_classes, out.shape[-1], name="classifier")(out)


class NB201SearchCell(nn.Module):
    op_names: tuple[tuple[str, ...], ...]
    C: int

    @nn.compact
    def __call__(self, x, w_ExK, train: bool):
        edges = spaces._nb201_edges()
        nodes = _cell_nodes(self, [x], edges, self.op_names, [1] * len(edges), self.C, False,
                            w_ExK, train)  # fmt: skip
        return nodes[-1]


class ResNetBlock(nn.Module):
    """NB201 reduction: shortcut(x) + B(A(x)), A stride 2 (SPEC 3.2)."""

    C_out: int

    @nn.compact
    def __call__(self, x, train: bool):
        y = ops.ReLUConvBN(self.C_out, 3, 2, 1, affine=True, name="conv_a")(x, train)
        y = ops.ReLUConvBN(self.C_out, 3, 1, 1, affine=True, name="conv_b")(y, train)
        sc = nn.avg_pool(x, (2, 2), (2, 2))
        sc = ops.conv(self.C_out, 1, name="shortcut")(sc)
        return sc + y


class NB201Supernet(nn.Module):
    """NAS-Bench-201 search network (TinyNetwork): C=16, N=5 cells per stage."""

    space: spaces.SearchSpace
    C: int = 16
    N: int = 5
    num_classes: int = 10

    @nn.compact
    def __call__(self, x_BxHxWxC, weights: Mapping[str, jax.Array], *, train: bool):
        x = ops.conv(self.C, 3, 1, 1, name="stem_conv")(x_BxHxWxC)
        x = ops.batch_norm(True, name="stem_bn")(x, use_running_average=not train)
        c, idx = self.C, 0
        for stage in range(3):
            if stage:
                c *= 2
                x = ResNetBlock(c, name=f"cell{idx}")(x, train)
                idx += 1
            for _ in range(self.N):
                cell = NB201SearchCell(self.space.ops["cell"], c, name=f"cell{idx}")
                x = cell(x, weights["cell"], train)
                idx += 1
        x = nn.relu(ops.batch_norm(True, name="lastact_bn")(x, use_running_average=not train))
        x = jnp.mean(x, axis=(1, 2))
        return ops.dense(self.num_classes, x.shape[-1], name="classifier")(x)


def build_supernet(
    space: spaces.SearchSpace,
    *,
    C: int = 16,
    layers: int = 8,
    num_classes: int = 10,
    nb201_cells: int = 5,
) -> nn.Module:
    """The supernet of a space. NB201 ignores `layers` (SPEC 4.3) and has `nb201_cells`
    cells per stage (5 in the reference; fewer for smoke runs)."""
    if space.family == "nb201":
        return NB201Supernet(space, C=C, N=nb201_cells, num_classes=num_classes)
    return DartsSupernet(space, C=C, layers=layers, num_classes=num_classes)
