"""Batch indices as a pure function of (key, step): iid (reference) and epoch modes."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nas_jax.data import (
    SAMPLERS,
    epoch_batch_indices,
    epoch_batch_mask,
    gather_batch,
    get_sampler,
    iid_batch_indices,
    steps_per_epoch,
)


def _jitted(fn, n, b):
    return jax.jit(functools.partial(fn, num_examples=n, batch_size=b))


@pytest.mark.parametrize(
    "n, b, steps", [(25000, 64, 391), (36628, 64, 573), (75850, 64, 1186), (10, 5, 2)]
)
def test_steps_per_epoch_is_ceil(n, b, steps):
    assert steps_per_epoch(n, b) == steps


def test_iid_batches_distinct_in_range_and_deterministic():
    n, b = 1000, 64
    draw = _jitted(iid_batch_indices, n, b)
    key = jax.random.key(0)
    batches = np.stack([np.asarray(draw(key, step)) for step in range(50)])
    assert batches.dtype == np.int32 and batches.shape == (50, b)
    assert all(len(set(row)) == b for row in batches)
    assert batches.min() >= 0 and batches.max() < n
    # pure function of (key, step): a resumed run draws the same batch
    np.testing.assert_array_equal(draw(key, 17), batches[17])
    np.testing.assert_array_equal(draw(key, jnp.int32(17)), batches[17])
    # different steps and different keys differ
    assert len({row.tobytes() for row in batches}) == 50
    assert not np.array_equal(draw(jax.random.key(1), 17), batches[17])


def test_iid_batches_are_uniform_and_independent_of_step():
    n, b, steps = 20, 5, 4000
    draw = jax.jit(
        jax.vmap(
            functools.partial(iid_batch_indices, num_examples=n, batch_size=b),
            (None, 0),
        )
    )
    batches = np.asarray(draw(jax.random.key(2), jnp.arange(steps)))
    counts = np.bincount(batches.ravel(), minlength=n)
    expected = steps * b / n  # 1000, sd about 27
    assert np.abs(counts - expected).max() < 120
    # unlike an epoch pass, an index can be drawn in consecutive steps
    overlap = [len(set(batches[i]) & set(batches[i + 1])) for i in range(100)]
    assert max(overlap) > 0


def test_epoch_mode_covers_every_index_exactly_once_per_epoch():
    n, b = 10, 4  # 3 steps per epoch, the last one partial
    draw = _jitted(epoch_batch_indices, n, b)
    key = jax.random.key(3)
    per_epoch = steps_per_epoch(n, b)
    epochs = []
    for epoch in range(3):
        seen = []
        for step in range(epoch * per_epoch, (epoch + 1) * per_epoch):
            idx = np.asarray(draw(key, step))
            valid = np.asarray(epoch_batch_mask(step, num_examples=n, batch_size=b))
            assert len(set(idx)) == b  # distinct within a batch, top-up included
            seen.extend(idx[valid])
        assert sorted(seen) == list(range(n))
        epochs.append(seen)
    assert epochs[0] != epochs[1] != epochs[2]  # a fresh permutation each epoch
    np.testing.assert_array_equal(
        epoch_batch_mask(2, num_examples=n, batch_size=b), [True, True, False, False]
    )
    # negative control: the iid sampler does not cover an epoch exactly once
    iid = _jitted(iid_batch_indices, n, b)
    drawn = np.concatenate([np.asarray(iid(key, s)) for s in range(per_epoch)])
    assert sorted(drawn[:n]) != list(range(n))


def test_epoch_mode_when_batch_divides_n():
    n, b = 12, 4
    draw = _jitted(epoch_batch_indices, n, b)
    key = jax.random.key(4)
    seen = np.concatenate([np.asarray(draw(key, s)) for s in range(3)])
    assert sorted(seen) == list(range(n))
    assert np.asarray(epoch_batch_mask(2, num_examples=n, batch_size=b)).all()


def test_registry_and_size_checks():
    assert get_sampler("iid") is iid_batch_indices and set(SAMPLERS) == {"iid", "epoch"}
    with pytest.raises(ValueError, match="valid names: iid, epoch"):
        get_sampler("shuffle")
    with pytest.raises(ValueError, match="batch_size"):
        iid_batch_indices(jax.random.key(0), 0, num_examples=3, batch_size=4)


def test_gather_batch():
    images = jnp.arange(5 * 2 * 2 * 1, dtype=jnp.uint8).reshape(5, 2, 2, 1)
    labels = jnp.array([10, 11, 12, 13, 14])
    x, y = gather_batch(images, labels, jnp.array([3, 0]))
    np.testing.assert_array_equal(y, [13, 10])
    np.testing.assert_array_equal(x, np.asarray(images)[[3, 0]])
