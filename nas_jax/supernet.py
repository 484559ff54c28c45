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
not finite has diverged either way.) Skipping it also saves its backward fusions on
XLA:CPU (experiments/results/README.md, "The none op").

Every node goes through `kernels.materialize` (a fusion barrier on XLA:CPU, see there).
"""

from __future__ import annotations

from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from nas_jax import families, ops, spaces
from nas_jax.families import darts, nb201
from nas_jax.kernels import materialize


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


def _cell_nodes(states, edges, edge_ops, strides, C, pool_bn, w_ExK, train):
    """The mixed nodes of the calling cell: node t = sum of MixedOp(states[j]) over its
    edges (t, j), materialized, appended to `states` in target order (edge ids enter each
    node's sum in id order). Edges are MixedOp children of the cell named `edge{e}`."""
    targets: dict[int, list[int]] = {}
    for e, (t, _) in enumerate(edges):
        targets.setdefault(t, []).append(e)
    for t in sorted(targets):
        node = 0.0
        for e in targets[t]:
            mixed = MixedOp(edge_ops[e], C, strides[e], pool_bn, name=f"edge{e}")
            node = node + mixed(states[edges[e][1]], w_ExK[e], train)
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
        reads_input = self.space.reduction_edges()
        edges = self.space.edges
        edge_ops = [self.space.edge_ops(cell_type, e) for e in range(len(edges))]
        strides = [2 if self.reduction and reads_input[e] else 1 for e in range(len(edges))]
        states = _cell_nodes([s0, s1], edges, edge_ops, strides, self.C, True, w_ExK, train)
        return jnp.concatenate([states[i] for i in darts.CONCAT], axis=-1)


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
        edges = nb201.EDGES
        nodes = _cell_nodes([x], edges, self.op_names, [1] * len(edges), self.C, False,
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
    """The supernet of a space, built by its family. NB201 ignores `layers` (SPEC 4.3)
    and has `nb201_cells` cells per stage (5 in the reference; fewer for smoke runs)."""
    return families.get_family(space.family).build_supernet(
        space, C=C, layers=layers, num_classes=num_classes, nb201_cells=nb201_cells
    )
