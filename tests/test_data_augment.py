"""On-device augmentation: crop, flip, normalize, cutout, and their composition."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nas_jax.data import (
    augment_batch,
    cutout,
    cutout_mask,
    default_pad,
    normalize,
    random_crop,
    random_crop_flip,
    random_flip,
)

MEAN, STD = (0.49139968, 0.48215827, 0.44653124), (0.24703233, 0.24348505, 0.26158768)
# jitted once per static setting: eager dispatch would compile every primitive separately
crop_flip = jax.jit(random_crop_flip, static_argnums=(2, 3))
crop = jax.jit(random_crop, static_argnums=2)
flip = jax.jit(random_flip)
cut = jax.jit(cutout, static_argnums=2)


def _images(b=16, h=8, w=8, c=3, seed=0):
    return jax.random.randint(jax.random.key(seed), (b, h, w, c), 1, 256).astype(jnp.uint8)


def test_crop_without_pad_and_flip_is_identity():
    x = _images()
    out = crop_flip(jax.random.key(1), x, 0, False)
    np.testing.assert_array_equal(out, x)
    # negative control: with padding the crops move
    assert not np.array_equal(crop_flip(jax.random.key(1), x, 2, False), x)


def test_every_crop_is_a_window_of_the_zero_padded_image():
    x = _images(b=32)
    pad = 2
    out = np.asarray(crop(jax.random.key(3), x, pad))
    padded = np.pad(np.asarray(x), ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    offsets = set()
    for i in range(len(x)):
        hits = [
            (dy, dx)
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
            if np.array_equal(out[i], padded[i, dy : dy + 8, dx : dx + 8])
        ]
        assert len(hits) == 1, f"sample {i} is not a unique window"
        offsets.add(hits[0])
    assert len(offsets) > 5  # offsets are drawn per sample
    assert out.dtype == np.uint8


def test_flip_mirrors_about_half_of_the_samples():
    x = np.asarray(_images(b=64))
    out = np.asarray(flip(jax.random.key(4), x))
    flipped = [np.array_equal(o, xi[:, ::-1]) for o, xi in zip(out, x)]
    kept = [np.array_equal(o, xi) for o, xi in zip(out, x)]
    assert all(f != k for f, k in zip(flipped, kept))  # each sample one or the other
    assert 16 < sum(flipped) < 48


def test_same_key_same_result_different_key_different_result():
    x = jnp.broadcast_to(_images(b=1), (16, 8, 8, 3))
    a = crop_flip(jax.random.key(5), x, 2, True)
    np.testing.assert_array_equal(a, crop_flip(jax.random.key(5), x, 2, True))
    assert not np.array_equal(a, crop_flip(jax.random.key(6), x, 2, True))
    # identical inputs, independent draws per sample
    assert len({row.tobytes() for row in np.asarray(a)}) > 4


def test_normalize_units_and_dtype():
    x = jnp.array([0, 255], jnp.uint8).reshape(2, 1, 1, 1) * jnp.ones((1, 1, 1, 3), jnp.uint8)
    out = normalize(x, MEAN, STD)
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(out[0, 0, 0], -np.array(MEAN) / np.array(STD), rtol=1e-6)
    np.testing.assert_allclose(out[1, 0, 0], (1 - np.array(MEAN)) / np.array(STD), rtol=1e-6)
    np.testing.assert_allclose(normalize(x.astype(jnp.float32), MEAN, STD), out)


def test_cutout_mask_hand_worked():
    # center (3, 3), length 4: rows and columns 1..4
    mask = np.asarray(cutout_mask(jnp.array([3]), jnp.array([3]), 4, 8, 8))[0]
    expected = np.zeros((8, 8), bool)
    expected[1:5, 1:5] = True
    np.testing.assert_array_equal(mask, expected)
    # border: center (0, 7) -> rows [-2, 2) & cols [5, 9) clipped to rows 0..1, cols 5..7
    mask = np.asarray(cutout_mask(jnp.array([0]), jnp.array([7]), 4, 8, 8))[0]
    expected = np.zeros((8, 8), bool)
    expected[0:2, 5:8] = True
    np.testing.assert_array_equal(mask, expected)
    # odd length behaves like the reference: [y - 1, y + 1) for length 3
    mask = np.asarray(cutout_mask(jnp.array([4]), jnp.array([4]), 3, 8, 8))[0]
    assert mask.sum() == 4 and mask[3:5, 3:5].all()
    # the real setting: 16 on 32x32 at the center covers 256 pixels
    assert int(cutout_mask(jnp.array([16]), jnp.array([16]), 16, 32, 32).sum()) == 256


def test_cutout_zeroes_one_clipped_square_on_all_channels():
    x = jnp.ones((200, 8, 8, 3), jnp.float32) * 2.0
    out = np.asarray(cut(jax.random.key(7), x, 4, 1.0))
    zero_BxHxW = out == 0
    assert (zero_BxHxW.all(-1) == zero_BxHxW.any(-1)).all()  # all channels together
    zero_BxHxW = zero_BxHxW[..., 0]
    assert ((out == 2.0) | (out == 0.0)).all()
    for z in zero_BxHxW:
        rows, cols = np.nonzero(z.any(1))[0], np.nonzero(z.any(0))[0]
        assert 1 <= len(rows) <= 4 and 1 <= len(cols) <= 4
        assert z.sum() == len(rows) * len(cols)  # a (clipped) rectangle
        assert np.all(np.diff(rows) == 1) and np.all(np.diff(cols) == 1)
    sizes = zero_BxHxW.sum((1, 2))
    assert (sizes == 16).any() and (sizes < 16).any()  # interior and border squares
    # centers cover the whole image, borders included
    assert zero_BxHxW[:, 0, :].any() and zero_BxHxW[:, -1, :].any()


def test_cutout_probability():
    x = jnp.ones((2000, 8, 8, 1), jnp.float32)
    key = jax.random.key(8)
    # prob is traced here (the search ramps it per epoch)
    np.testing.assert_array_equal(cut(key, x, 4, 0.0), x)
    applied = (np.asarray(cut(key, x, 4, 0.3)) == 0).any((1, 2, 3)).mean()
    assert 0.25 < applied < 0.35
    assert (np.asarray(cut(key, x, 4, 1.0)) == 0).any((1, 2, 3)).all()


def test_augment_batch_composition():
    x = _images(b=32, h=32, w=32)
    aug = jax.jit(
        augment_batch,
        static_argnames=("mean", "std", "pad", "flip", "cutout_length"),
    )
    plain = aug(jax.random.key(0), x, mean=MEAN, std=STD, pad=0, flip=False)
    np.testing.assert_allclose(plain, normalize(x, MEAN, STD), rtol=1e-5, atol=1e-6)
    out = aug(
        jax.random.key(0),
        x,
        mean=MEAN,
        std=STD,
        pad=4,
        cutout_length=16,
        cutout_prob=1.0,
    )
    assert out.shape == x.shape and out.dtype == jnp.float32
    # padding is zero *before* normalisation; cutout is zero *after* it
    pad_value = -np.array(MEAN) / np.array(STD)
    assert np.isclose(np.asarray(out), pad_value).all(-1).any()
    assert (np.asarray(out) == 0).all(-1).sum((1, 2)).min() >= 64
    # x has no zero pixels, so only padding produces the normalized-zero value
    assert not np.isclose(np.asarray(plain), pad_value).all(-1).any()


@pytest.mark.parametrize("size, pad", [(32, 4), (16, 2)])
def test_default_pad_matches_reference(size, pad):
    assert default_pad(size) == pad
