"""Batch indices drawn on device as a pure function of (key, step) (SPEC 6.1).

A resumed run that passes the same key and step draws the same batches. Use a
different key per stream (e.g. `fold_in(key, 0)` for the train half and
`fold_in(key, 1)` for the valid half); `num_examples` and `batch_size` are static.

Samplers (registry `SAMPLERS`, `get_sampler(name)`):
- "iid" (the reference's behaviour, default): every step draws `batch_size`
  distinct indices uniformly at random without replacement, independently of
  other steps. An "epoch" is only a step count, `steps_per_epoch`.
- "epoch": a fresh permutation per epoch from `fold_in(key, epoch)`; batch i is
  slice i. The last batch of an epoch is partial when B does not divide N: it is
  topped up with the first indices of that epoch's permutation, so the shape stays
  (B,), every index appears at least once per epoch, and the top-up (marked False
  by `epoch_batch_mask`) repeats some of the epoch's first batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    """ceil(N / B): the reference's epoch length (391 for 25,000 / 64)."""
    return math.ceil(num_examples / batch_size)


def _check_sizes(num_examples: int, batch_size: int) -> None:
    if not 0 < batch_size <= num_examples:
        raise ValueError(
            f"batch_size must be in [1, num_examples={num_examples}], got {batch_size}"
        )


def iid_batch_indices(
    key: jax.Array, step: int | jax.Array, *, num_examples: int, batch_size: int
) -> jax.Array:
    """`batch_size` distinct indices in [0, N), uniform without replacement, per step.

    The indices of the B largest of N uniform draws: a uniformly random B-subset in
    random order, like `jax.random.choice(..., replace=False)` but 20-50x faster on
    CPU (no full permutation). Float32 ties at the cut (chance about N / 2**23 per
    step) go to the lower index, a negligible bias.
    """
    _check_sizes(num_examples, batch_size)
    scores_N = jax.random.uniform(jax.random.fold_in(key, step), (num_examples,))
    return jax.lax.top_k(scores_N, batch_size)[1].astype(jnp.int32)


def epoch_batch_indices(
    key: jax.Array, step: int | jax.Array, *, num_examples: int, batch_size: int
) -> jax.Array:
    """Slice `step % steps_per_epoch` of the permutation for epoch `step // steps_per_epoch`."""
    _check_sizes(num_examples, batch_size)
    per_epoch = steps_per_epoch(num_examples, batch_size)
    epoch, position = jnp.divmod(jnp.asarray(step, jnp.int32), per_epoch)
    perm_N = jax.random.permutation(jax.random.fold_in(key, epoch), num_examples)
    wrapped = jnp.concatenate([perm_N, perm_N[:batch_size]]).astype(jnp.int32)
    return jax.lax.dynamic_slice(wrapped, (position * batch_size,), (batch_size,))


def epoch_batch_mask(step: int | jax.Array, *, num_examples: int, batch_size: int) -> jax.Array:
    """True for the entries of `epoch_batch_indices` that are not the last batch's top-up."""
    position = jnp.asarray(step, jnp.int32) % steps_per_epoch(num_examples, batch_size)
    return position * batch_size + jnp.arange(batch_size) < num_examples


Sampler = Callable[..., jax.Array]
SAMPLERS: dict[str, Sampler] = {"iid": iid_batch_indices, "epoch": epoch_batch_indices}


def get_sampler(name: str) -> Sampler:
    """The sampler called `name`: fn(key, step, *, num_examples, batch_size) -> idx_B."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; valid names: {', '.join(SAMPLERS)}")
    return SAMPLERS[name]


def gather_batch(
    images_NxHxWxC: jax.Array, labels_N: jax.Array, idx_B: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """The batch at `idx_B` from arrays already in device memory."""
    return jnp.take(images_NxHxWxC, idx_B, axis=0), jnp.take(labels_N, idx_B, axis=0)
