"""Eval-mode loss and accuracy over a held-out split in device memory.

Batches are read in order; the last one is padded to the batch size and its padding
masked out, so every batch has one shape and the pass compiles once. BatchNorm uses its
running statistics (`logits_fn` decides how the network is applied).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from nas_jax import data
from nas_jax.reporting import logger


def make_evaluator(logits_fn: Callable, batch_size: int, mean: Sequence[float],
                   std: Sequence[float]) -> Callable:  # fmt: skip
    """`evaluate(args, images, labels, key, max_batches=0) -> {'loss', 'acc', 'examples'}`.

    `logits_fn(args, x_BxHxWxC, key) -> logits`: the network in eval mode, `args` a pytree
    of what it reads (parameters, statistics, mixing weights); `key` (folded with the
    batch index) feeds random ops such as S4's noise. `max_batches` > 0 reads only the
    first batches. Accuracy in percent, loss the mean cross-entropy.
    """

    @jax.jit
    def eval_batch(args, x_uint8, y, mask, key):
        # Python side effect: runs when tracing, i.e. right before a compile.
        logger.info("Compiling the evaluation pass (first call of this shape)...")
        logits = logits_fn(args, data.normalize(x_uint8, mean, std), key)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y)
        correct = (jnp.argmax(logits, -1) == y).astype(jnp.float32)
        return jnp.sum(loss * mask), jnp.sum(correct * mask)

    def evaluate(args, images, labels, key, max_batches: int = 0) -> dict:
        n = int(labels.shape[0])
        nb = math.ceil(n / batch_size)
        if max_batches:
            nb = min(nb, max_batches)
        loss_sum = correct_sum = 0.0
        count = 0
        for b in range(nb):
            idx = np.arange(b * batch_size, (b + 1) * batch_size)
            mask = (idx < n).astype(np.float32)
            idx = np.minimum(idx, n - 1)  # pad the last batch: same shape, no recompile
            loss_b, correct_b = eval_batch(
                args, images[idx], labels[idx], mask, jax.random.fold_in(key, b)
            )
            loss_sum, correct_sum = loss_sum + loss_b, correct_sum + correct_b
            count += int(mask.sum())
        return {"loss": float(loss_sum) / count, "acc": 100.0 * float(correct_sum) / count,
                "examples": count}  # fmt: skip

    return evaluate
