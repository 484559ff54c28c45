"""The in-memory dataset record and the search split (SPEC 6.1)."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np


class DatasetNotPreparedError(FileNotFoundError):
    """The files a loader needs are not in `data_dir`; the message says how to get them."""


class DataError(ValueError):
    """The user's data is there but malformed (an undecodable image, a one-class folder, a file
    that does not unpickle); the message is one line naming the file or folder."""


class Dataset(NamedTuple):
    """A whole split in host memory (a NamedTuple: use `len(ds.labels)` for its size).

    `images` is uint8 N x H x W x C (NHWC), `labels` int32 N. `mean`/`std` are the
    per-channel normalisation constants in [0, 1] units (pixel / 255).
    """

    images: np.ndarray
    labels: np.ndarray
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    name: str
    class_names: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, images={self.images.dtype}{list(self.images.shape)}, "
            f"num_classes={self.num_classes}, mean={self.mean}, std={self.std})"
        )


def make_dataset(
    images_NxHxWxC: np.ndarray,
    labels_N: np.ndarray,
    *,
    num_classes: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    name: str,
    class_names: tuple[str, ...] = (),
) -> Dataset:
    """Builds a `Dataset`, checking dtypes, shapes and that labels fit `num_classes`."""
    images_NxHxWxC = np.asarray(images_NxHxWxC)
    labels_N = np.asarray(labels_N).astype(np.int32)
    if images_NxHxWxC.dtype != np.uint8 or images_NxHxWxC.ndim != 4:
        raise ValueError(
            f"{name}: images must be uint8 N x H x W x C, got "
            f"{images_NxHxWxC.dtype}{list(images_NxHxWxC.shape)}"
        )
    if labels_N.shape != images_NxHxWxC.shape[:1]:
        raise ValueError(f"{name}: {len(labels_N)} labels for {len(images_NxHxWxC)} images")
    if len(labels_N) and (labels_N.min() < 0 or labels_N.max() >= num_classes):
        raise ValueError(
            f"{name}: labels span [{labels_N.min()}, {labels_N.max()}], expected [0, {num_classes})"
        )
    channels = images_NxHxWxC.shape[-1]
    if len(mean) != channels or len(std) != channels:
        raise ValueError(
            f"{name}: mean/std have {len(mean)}/{len(std)} entries for {channels} channels"
        )
    return Dataset(
        images=images_NxHxWxC,
        labels=labels_N,
        num_classes=int(num_classes),
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
        name=name,
        class_names=tuple(class_names),
    )


def channel_mean_std(
    images_NxHxWxC: np.ndarray, chunk: int = 4096
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of pixel/255 over all images and pixels.

    Accumulated in float64 over chunks so a 50k-image split never needs a float copy.
    """
    n, h, w, c = images_NxHxWxC.shape
    if n == 0:
        raise ValueError("cannot compute mean/std of an empty split")
    total_C = np.zeros(c)
    total_sq_C = np.zeros(c)
    for start in range(0, n, chunk):
        x = images_NxHxWxC[start : start + chunk].astype(np.float64) / 255.0
        total_C += x.sum(axis=(0, 1, 2))
        total_sq_C += np.square(x).sum(axis=(0, 1, 2))
    count = n * h * w
    mean_C = total_C / count
    std_C = np.sqrt(np.maximum(total_sq_C / count - np.square(mean_C), 0.0))
    return tuple(float(m) for m in mean_C), tuple(float(s) for s in std_C)


def split_train_valid(ds: Dataset, train_portion: float) -> tuple[Dataset, Dataset]:
    """SPEC 6.1: first floor(portion * N) samples in index order (no shuffle), then the rest.

    Both halves keep the parent's mean/std (the reference augments both halves alike).
    """
    if not 0.0 < train_portion < 1.0:
        raise ValueError(f"train_portion must be in (0, 1), got {train_portion}")
    n = len(ds.labels)
    n_train = math.floor(train_portion * n)
    if n_train == 0 or n_train == n:
        raise ValueError(f"train_portion={train_portion} leaves an empty half of {n} samples")
    first = ds._replace(images=ds.images[:n_train], labels=ds.labels[:n_train])
    rest = ds._replace(images=ds.images[n_train:], labels=ds.labels[n_train:])
    return first, rest
