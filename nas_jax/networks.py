"""Discrete evaluation networks: DARTS cells for CIFAR (SPEC 4.1) and ImageNet (4.2),
and the NAS-Bench-201 cell network (4.3 with a fixed cell). Every BN is affine."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from nas_jax import families, ops
from nas_jax.genotype import AnyGenotype, Genotype, NB201Genotype
from nas_jax.kernels import materialize
from nas_jax.supernet import ResNetBlock, reduction_layers


def _active(p) -> bool:
    return p is not None and not (isinstance(p, (int, float)) and p == 0)


class EvalCell(nn.Module):
    pairs: tuple[tuple[str, int], ...]
    concat: tuple[int, ...]
    C: int
    reduction: bool
    reduction_prev: bool

    @nn.compact
    def __call__(self, s0, s1, train: bool, drop_path_prob=None):
        if self.reduction_prev:
            s0 = ops.FactorizedReduce(self.C, name="preprocess0")(s0, train)
        else:
            s0 = ops.ReLUConvBN(self.C, 1, name="preprocess0")(s0, train)
        s1 = ops.ReLUConvBN(self.C, 1, name="preprocess1")(s1, train)
        states = [s0, s1]
        for i in range(len(self.pairs) // 2):
            node = 0.0
            for p in (2 * i, 2 * i + 1):
                name, j = self.pairs[p]
                stride = 2 if self.reduction and j < 2 else 1
                op = ops.make_op(name, self.C, stride, True, module_name=f"pair{p}_{name}")
                h = op(states[j], train)
                # Drop-path skips the stride-1 identity only (FactorizedReduce gets it).
                if train and _active(drop_path_prob) and not isinstance(op, ops.Identity):
                    h = ops.drop_path(self.make_rng("dropout"), h, drop_path_prob)
                node = node + h
            states.append(materialize(node))  # fusion barrier (nas_jax.kernels.fusion)
        return jnp.concatenate([states[i] for i in self.concat], axis=-1)


class AuxiliaryHead(nn.Module):
    num_classes: int
    imagenet: bool = False

    @nn.compact
    def __call__(self, x, train: bool):
        x = nn.relu(x)
        stride = 2 if self.imagenet else 3
        x = nn.avg_pool(x, (5, 5), (stride, stride), count_include_pad=False)
        x = ops.conv(128, 1)(x)
        x = nn.relu(ops.batch_norm(True)(x, use_running_average=not train))
        x = ops.conv(768, 2)(x)
        if not self.imagenet:  # the ImageNet head has no BN after the 768 conv (SPEC 4.2)
            x = ops.batch_norm(True)(x, use_running_average=not train)
        x = nn.relu(x).reshape(x.shape[0], -1)
        return ops.dense(self.num_classes, x.shape[-1])(x)


class DartsEvalNetwork(nn.Module):
    """The discrete DARTS network; returns (logits, aux_logits or None)."""

    genotype: Genotype
    C: int = 36
    layers: int = 20
    num_classes: int = 10
    auxiliary: bool = True
    imagenet: bool = False

    @nn.compact
    def __call__(self, x_BxHxWxC, *, train: bool, drop_path_prob=None):
        bn = lambda name: ops.batch_norm(True, name=name)  # noqa: E731
        ura = not train
        if self.imagenet:
            s = ops.conv(self.C // 2, 3, 2, 1, name="stem0_conv0")(x_BxHxWxC)
            s = nn.relu(bn("stem0_bn0")(s, use_running_average=ura))
            s = ops.conv(self.C, 3, 2, 1, name="stem0_conv1")(s)
            s0 = bn("stem0_bn1")(s, use_running_average=ura)
            s1 = ops.conv(self.C, 3, 2, 1, name="stem1_conv")(nn.relu(s0))
            s1 = bn("stem1_bn")(s1, use_running_average=ura)
            c_curr, reduction_prev = self.C, True
        else:
            s = ops.conv(3 * self.C, 3, 1, 1, name="stem_conv")(x_BxHxWxC)
            s0 = s1 = bn("stem_bn")(s, use_running_average=ura)
            c_curr, reduction_prev = self.C, False
        reductions = reduction_layers(self.layers)
        g = self.genotype
        logits_aux = None
        for i in range(self.layers):
            reduction = i in reductions
            if reduction:
                c_curr *= 2
            pairs, concat = (
                (g.reduce, g.reduce_concat) if reduction else (g.normal, g.normal_concat)
            )
            cell = EvalCell(pairs, concat, c_curr, reduction, reduction_prev, name=f"cell{i}")
            s0, s1 = s1, cell(s0, s1, train, drop_path_prob)
            reduction_prev = reduction
            if i == reductions[1] and self.auxiliary and train:
                logits_aux = AuxiliaryHead(self.num_classes, self.imagenet, name="auxiliary")(
                    s1, train
                )
        out = jnp.mean(s1, axis=(1, 2))
        return ops.dense(self.num_classes, out.shape[-1], name="classifier")(out), logits_aux


class NB201InferCell(nn.Module):
    ops_E: tuple[str, ...]
    C: int

    @nn.compact
    def __call__(self, x, train: bool):
        nodes, eid = [x], 0
        for i in range(1, 4):
            node = 0.0
            for j in range(i):
                op = ops.make_op(self.ops_E[eid], self.C, 1, True, module_name=f"edge{eid}")
                node = node + op(nodes[j], train)
                eid += 1
            nodes.append(materialize(node))
        return nodes[-1]


class NB201Network(nn.Module):
    """The NB201 network with one fixed cell; returns (logits, None)."""

    genotype: NB201Genotype
    C: int = 16
    N: int = 5
    num_classes: int = 10

    @nn.compact
    def __call__(self, x_BxHxWxC, *, train: bool, drop_path_prob=None):
        x = ops.conv(self.C, 3, 1, 1, name="stem_conv")(x_BxHxWxC)
        x = ops.batch_norm(True, name="stem_bn")(x, use_running_average=not train)
        c, idx = self.C, 0
        for stage in range(3):
            if stage:
                c *= 2
                x = ResNetBlock(c, name=f"cell{idx}")(x, train)
                idx += 1
            for _ in range(self.N):
                x = NB201InferCell(self.genotype.ops, c, name=f"cell{idx}")(x, train)
                idx += 1
        x = nn.relu(ops.batch_norm(True, name="lastact_bn")(x, use_running_average=not train))
        x = jnp.mean(x, axis=(1, 2))
        return ops.dense(self.num_classes, x.shape[-1], name="classifier")(x), None


def build_eval_network(
    genotype: AnyGenotype,
    *,
    C: int | None = None,
    layers: int | None = None,
    num_classes: int = 10,
    auxiliary: bool = True,
    imagenet: bool = False,
) -> nn.Module:
    """The discrete network of `genotype`, built by its family; C and layers (NB201: cells
    per stage) default to the family's evaluation network."""
    fam = families.family_of(genotype)
    C0, layers0 = fam.network_defaults
    return fam.build_network(
        genotype, C=C or C0, layers=layers or layers0, num_classes=num_classes,
        auxiliary=auxiliary, imagenet=imagenet,
    )  # fmt: skip


def count_params(tree) -> int:
    return int(sum(x.size for x in jax.tree_util.tree_leaves(tree)))
