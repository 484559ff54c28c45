"""Batched perturbation scoring (SPEC 5.3, 7.2).

PT scores a supernet variant by its accuracy and loss on the held-out half with BN in
train mode (batch statistics). All K op removals of one edge (or all input-edge
removals of one node) are scored in one call: `jax.vmap` over a leading variant axis
of the mixing weights, or `jax.lax.map(..., batch_size=chunk)` when memory is short.
The edge index is traced, so one compilation per (kind, cell type) serves every edge
and every decision of the selection phase; `Scorer.trace_counts` proves it.

Differences from the reference, on purpose:
- all variants of one decision see the same batches and augmentations (common random
  numbers); the reference draws a fresh random order for every variant's pass;
- the last, partial batch of a pass is topped up with examples from the start of the
  pass (`data.epoch_batch_indices`): they are masked out of the counts but enter that
  batch's BN statistics (1 of 391 batches on CIFAR);
- running statistics are not written back unless `write_back=True`, which reproduces
  the reference's sequential EMA (variant after variant, batch after batch) exactly.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from nas_jax import arch, data
from nas_jax.reporting import logger

# What a scoring pass compares, as mixing-weight variants with a leading axis:
#   op    every op of edge `index` removed in turn (SPEC 5.3)
#   edge  each edge of `index` (padded with -1) removed alone (SPEC 7.4)
#   base  the weights themselves
_VARIANTS = {
    "op": lambda w, cell_type, index: arch.op_removal_variants(w, cell_type, index),
    "edge": lambda w, cell_type, index: arch.edge_removal_variants(w, cell_type, index),
    "base": lambda w, cell_type, index: jax.tree.map(lambda a: a[None], w),
}
KINDS = tuple(_VARIANTS)


@dataclasses.dataclass(frozen=True)
class DataProtocol:
    """How a scoring pass reads the held-out half (static under jit).

    The reference scores with the training augmentation (SPEC 6.1, pitfall 2).
    """

    batch_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    pad: int = 4
    flip: bool = True
    cutout_length: int = 0
    cutout_prob: float = 1.0
    augment: bool = True

    @classmethod
    def from_config(cls, cfg_data, mean: Sequence[float], std: Sequence[float]) -> DataProtocol:
        return cls(
            batch_size=int(cfg_data.batch_size),
            mean=tuple(float(m) for m in mean),
            std=tuple(float(s) for s in std),
            pad=int(cfg_data.pad),
            flip=bool(cfg_data.flip),
            cutout_length=int(cfg_data.cutout_length),
            cutout_prob=float(cfg_data.cutout_prob),
        )

    def num_batches(self, num_examples: int, max_batches: int = 0) -> int:
        """Batches of one pass: the whole split, or at most `max_batches` (0 = all)."""
        nb = math.ceil(num_examples / self.batch_size)
        return min(nb, max_batches) if max_batches else nb


def draw_batch(protocol: DataProtocol, x_N, y_N, key, b):
    """Batch `b` of the pass `key`: a fresh random order per key, augmented.

    Returns (x_BxHxWxC float32, y_B, mask_B) with mask False on the top-up entries.
    """
    n, bs = y_N.shape[0], protocol.batch_size
    k_order, k_aug = jax.random.split(key)
    idx_B = data.epoch_batch_indices(k_order, b, num_examples=n, batch_size=bs)
    mask_B = data.epoch_batch_mask(b, num_examples=n, batch_size=bs)
    x, y = data.gather_batch(x_N, y_N, idx_B)
    if protocol.augment:
        x = data.augment_batch(
            jax.random.fold_in(k_aug, b),
            x,
            mean=protocol.mean,
            std=protocol.std,
            pad=protocol.pad,
            flip=protocol.flip,
            cutout_length=protocol.cutout_length,
            cutout_prob=protocol.cutout_prob,
        )
    else:
        x = data.normalize(x, protocol.mean, protocol.std)
    return x, y, mask_B


def make_variant_scorer(model, *, chunk: int = 0, keep_stats: bool = False) -> Callable:
    """`score(variables, weights_V, x, y, mask, key) -> (correct_V, loss_V[, stats_V])`.

    variables: {'params', 'batch_stats'}; weights_V: the mixing-weight dict with a
    leading variant axis V on every entry. correct_V (int32) and loss_V (summed CE)
    count only entries where `mask` is True. BN uses batch statistics; with
    `keep_stats`, each variant's updated running statistics come back with the same
    leading axis. `chunk` > 0 scores `chunk` variants at a time (`lax.map`), else all
    at once (`vmap`); the results are equal.
    """

    def score_one(variables, weights, x, y, mask_B, key):
        logits, new = model.apply(
            variables, x, weights, train=True, mutable=["batch_stats"], rngs={"noise": key}
        )
        loss_B = optax.softmax_cross_entropy_with_integer_labels(logits, y)
        correct_B = jnp.argmax(logits, axis=-1) == y
        out = (jnp.sum(correct_B & mask_B, dtype=jnp.int32), jnp.sum(jnp.where(mask_B, loss_B, 0)))
        return out + (new.get("batch_stats", {}),) if keep_stats else out

    def score(variables, weights_V, x, y, mask_B, key):
        one = lambda w: score_one(variables, w, x, y, mask_B, key)
        if chunk:
            return jax.lax.map(one, weights_V, batch_size=chunk)
        return jax.vmap(one)(weights_V)

    return score


def score_op_removals(score, variables, weights, edge, x, y, mask, key, *, cell_type):
    """All K op removals of `edge` (traced) of `cell_type` on one batch (SPEC 5.3)."""
    variants = arch.op_removal_variants(weights, cell_type, edge)
    return score(variables, variants, x, y, mask, key)


def score_edge_removals(score, variables, weights, edges_V, x, y, mask, key, *, cell_type):
    """Whole-edge removals (SPEC 7.4); an entry -1 of `edges_V` (padding) removes nothing."""
    variants = arch.edge_removal_variants(weights, cell_type, edges_V)
    return score(variables, variants, x, y, mask, key)


class PassScores(NamedTuple):
    acc: np.ndarray  # percent, per variant
    loss: np.ndarray  # mean CE, per variant
    batch_stats: Any  # written-back running statistics, or the input ones


@functools.partial(jax.jit, static_argnames="momentum")
def _compose_running_stats(stats0, delta_V, valid_V, num_batches, *, momentum):
    """Running stats after the variants' passes ran one after another (the reference).

    delta_V[v] = EMA of variant v's batch statistics started from zero, so
    r <- m^T r + delta_V[v] applies variant v's T updates to r.
    """
    decay = momentum ** num_batches.astype(jnp.float32)

    def apply(r, xs):
        delta, valid = xs
        new = jax.tree.map(lambda a, d: decay * a + d, r, delta)
        return jax.tree.map(lambda n, a: jnp.where(valid, n, a), new, r), None

    return jax.lax.scan(apply, stats0, (delta_V, valid_V))[0]


class Scorer:
    """Scoring passes over a held-out split, one jitted per-batch accumulator.

    Arguments shared by the methods: `variables` = {'params', 'batch_stats'} of the
    supernet, `weights` = its mixing weights (all cell types), `split` = (uint8 images,
    labels) in device memory, `key` = the pass's random order and augmentation,
    `num_batches` = batches per pass (`DataProtocol.num_batches`).

    `max_edges` fixes the variant count of edge scoring (padded with a validity mask),
    so nodes with 3, 4 or 5 inputs and later rounds with fewer survivors share one
    compilation. `bn_momentum` is the Flax momentum of the model's BatchNorms (0.9 =
    PyTorch 0.1, `ops.batch_norm`), used only by `write_back`.
    """

    def __init__(
        self,
        model,
        protocol: DataProtocol,
        *,
        max_edges: int = 5,
        chunk: int = 0,
        write_back: bool = False,
        bn_momentum: float = 0.9,
    ):
        self.protocol, self.max_edges = protocol, max_edges
        self.write_back, self.bn_momentum = write_back, bn_momentum
        self.trace_counts: collections.Counter = collections.Counter()
        self._score = make_variant_scorer(model, chunk=chunk, keep_stats=write_back)
        self._base = make_variant_scorer(model, chunk=0, keep_stats=False)
        self._step = jax.jit(
            self._accumulate, static_argnames=("kind", "cell_type"), donate_argnums=0
        )

    def _accumulate(self, carry, variables, weights, index, split, key, b, *, kind, cell_type):
        self.trace_counts[(kind, cell_type)] += 1  # Python side effect: runs when tracing
        where = "all cell types" if cell_type is None else f"cell type {cell_type}"
        logger.info("Compiling the %s scorer (%s)", kind, where)
        k_data, k_noise = jax.random.split(key)
        x, y, mask_B = draw_batch(self.protocol, *split, k_data, b)
        k_noise = jax.random.fold_in(k_noise, b)
        variants = _VARIANTS[kind](weights, cell_type, index)
        score = self._base if kind == "base" else self._score
        out = score(variables, variants, x, y, mask_B, k_noise)
        correct_V, loss_V, count, delta_V = carry
        correct_V, loss_V = correct_V + out[0], loss_V + out[1]
        count = count + jnp.sum(mask_B, dtype=jnp.int32)
        if delta_V is not None:  # (1 - m) * batch stat = new - m * old, from zero
            m, old = self.bn_momentum, variables["batch_stats"]
            delta_V = jax.tree.map(lambda d, n, r: m * d + (n - m * r), delta_V, out[2], old)
        return correct_V, loss_V, count, delta_V

    def _run(self, kind, cell_type, V, variables, weights, index, split, key, num_batches,
             valid_V=None) -> PassScores:  # fmt: skip
        stats = variables["batch_stats"]
        write = self.write_back and kind != "base"
        zeros = lambda s: jnp.zeros((V, *s.shape), s.dtype)
        delta_V = jax.tree.map(zeros, stats) if write else None
        carry = (jnp.zeros((V,), jnp.int32), jnp.zeros((V,), jnp.float32), jnp.int32(0), delta_V)
        for b in range(num_batches):
            carry = self._step(carry, variables, weights, index, split, key, np.int32(b),
                               kind=kind, cell_type=cell_type)  # fmt: skip
        correct_V, loss_V, count, delta_V = carry
        count = int(count)
        acc = 100.0 * np.asarray(correct_V, np.float64) / count
        loss = np.asarray(loss_V, np.float64) / count
        if write:
            valid = jnp.ones((V,), bool) if valid_V is None else jnp.asarray(valid_V)
            stats = _compose_running_stats(
                stats, delta_V, valid, jnp.int32(num_batches), momentum=self.bn_momentum
            )
        return PassScores(acc, loss, stats)

    def score_ops(self, variables, weights, cell_type: str, edge: int, split, key,
                  num_batches: int) -> PassScores:  # fmt: skip
        """Every op of `edge` removed in turn; entry k = op k removed."""
        V = weights[cell_type].shape[-1]
        index = jnp.int32(edge)
        return self._run("op", cell_type, V, variables, weights, index, split, key, num_batches)

    def score_edges(self, variables, weights, cell_type: str, edges: Sequence[int], split, key,
                    num_batches: int) -> PassScores:  # fmt: skip
        """Each edge of `edges` removed alone; entries follow `edges`."""
        n, V = len(edges), self.max_edges
        if not 0 < n <= V:
            raise ValueError(f"{n} edges to score; this scorer takes 1 to {V}")
        padded = np.full((V,), -1, np.int32)
        padded[:n] = edges
        valid = np.arange(V) < n
        s = self._run("edge", cell_type, V, variables, weights, jnp.asarray(padded), split, key,
                      num_batches, valid)  # fmt: skip
        return PassScores(s.acc[:n], s.loss[:n], s.batch_stats)

    def evaluate(self, variables, weights, split, key, num_batches: int) -> tuple[float, float]:
        """(acc %, loss) of the weights themselves, same protocol; nothing written back."""
        s = self._run("base", None, 1, variables, weights, jnp.int32(0), split, key, num_batches)
        return float(s.acc[0]), float(s.loss[0])
