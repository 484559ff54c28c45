"""On-device augmentation (SPEC 9): pure, jittable, explicit PRNG keys, per-sample draws.

Order used for every dataset: random crop (zero padding, before normalisation),
then horizontal flip, then normalise, then cutout. The reference flips before
cropping for ImageNet16-120; that order gives exactly the same distribution
(flip(crop(x, o)) == crop(flip(x), 2*pad - o) and o is uniform on 0..2*pad), so a
single order serves all datasets.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp


def default_pad(image_size: int) -> int:
    """The reference's crop padding: 4 for 32x32 (CIFAR/SVHN), 2 for 16x16 (ImageNet16)."""
    return image_size // 8


def random_crop(key: jax.Array, x_BxHxWxC: jax.Array, pad: int) -> jax.Array:
    """Zero-pads by `pad` on each side and crops a random H x W window per sample."""
    if pad == 0:
        return x_BxHxWxC
    b, h, w, c = x_BxHxWxC.shape
    padded = jnp.pad(x_BxHxWxC, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    offsets_Bx2 = jax.random.randint(key, (b, 2), 0, 2 * pad + 1)

    def crop_one(image_HxWxC, offset_2):
        return jax.lax.dynamic_slice(image_HxWxC, (offset_2[0], offset_2[1], 0), (h, w, c))

    return jax.vmap(crop_one)(padded, offsets_Bx2)


def random_flip(key: jax.Array, x_BxHxWxC: jax.Array) -> jax.Array:
    """Mirrors each sample left-right with probability 0.5."""
    flip_B = jax.random.bernoulli(key, 0.5, (x_BxHxWxC.shape[0],))
    return jnp.where(flip_B[:, None, None, None], x_BxHxWxC[:, :, ::-1, :], x_BxHxWxC)


def random_crop_flip(
    key: jax.Array, x_BxHxWxC: jax.Array, pad: int, flip: bool = True
) -> jax.Array:
    """Random crop (zero padding `pad`) then, if `flip`, a random horizontal flip."""
    key_crop, key_flip = jax.random.split(key)
    x_BxHxWxC = random_crop(key_crop, x_BxHxWxC, pad)
    return random_flip(key_flip, x_BxHxWxC) if flip else x_BxHxWxC


def normalize(x_BxHxWxC: jax.Array, mean: Sequence[float], std: Sequence[float]) -> jax.Array:
    """(pixel / 255 - mean) / std per channel, as float32; pixels in 0..255 (uint8 or float)."""
    mean_C = jnp.asarray(mean, jnp.float32)
    std_C = jnp.asarray(std, jnp.float32)
    return (x_BxHxWxC.astype(jnp.float32) / 255.0 - mean_C) / std_C


def cutout_mask(
    center_y_B: jax.Array, center_x_B: jax.Array, length: int, height: int, width: int
) -> jax.Array:
    """True inside [y - length//2, y + length//2) x [x - length//2, x + length//2), clipped."""
    half = length // 2
    offset_y_BxH = jnp.arange(height)[None, :] - center_y_B[:, None]
    offset_x_BxW = jnp.arange(width)[None, :] - center_x_B[:, None]
    rows_BxH = (offset_y_BxH >= -half) & (offset_y_BxH < half)
    cols_BxW = (offset_x_BxW >= -half) & (offset_x_BxW < half)
    return rows_BxH[:, :, None] & cols_BxW[:, None, :]


def cutout(key: jax.Array, x_BxHxWxC: jax.Array, length: int, prob: float | jax.Array) -> jax.Array:
    """With probability `prob` per sample, zero a `length` square on all channels.

    The center (y, x) is uniform over all pixels; the square is `cutout_mask`'s
    (border squares are smaller). Apply after `normalize`, as the reference does.
    `prob` may be traced (the search ramps it per epoch).
    """
    b, h, w, _ = x_BxHxWxC.shape
    key_apply, key_y, key_x = jax.random.split(key, 3)
    apply_B = jax.random.bernoulli(key_apply, prob, (b,))
    center_y_B = jax.random.randint(key_y, (b,), 0, h)
    center_x_B = jax.random.randint(key_x, (b,), 0, w)
    mask_BxHxW = cutout_mask(center_y_B, center_x_B, length, h, w) & apply_B[:, None, None]
    return jnp.where(mask_BxHxW[..., None], jnp.zeros((), x_BxHxWxC.dtype), x_BxHxWxC)


def augment_batch(
    key: jax.Array,
    images_BxHxWxC: jax.Array,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    pad: int,
    flip: bool = True,
    cutout_length: int = 0,
    cutout_prob: float | jax.Array = 0.0,
) -> jax.Array:
    """Training transform: crop + flip on uint8, normalise, then cutout if cutout_length > 0.

    `pad`, `flip` and `cutout_length` are static (Python values); `cutout_prob` may
    be traced. Returns float32.
    """
    key_crop, key_cutout = jax.random.split(key)
    x_BxHxWxC = random_crop_flip(key_crop, images_BxHxWxC, pad, flip)
    x_BxHxWxC = normalize(x_BxHxWxC, mean, std)
    if cutout_length > 0:
        x_BxHxWxC = cutout(key_cutout, x_BxHxWxC, cutout_length, cutout_prob)
    return x_BxHxWxC
