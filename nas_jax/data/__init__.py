"""Datasets in host memory, the search split, on-device batches and augmentation.

ds = load_dataset("cifar10", "train", data_dir="/data/tfds")
train_half, valid_half = split_train_valid(ds, 0.5)
idx_B = get_sampler("iid")(key, step, num_examples=len(train_half.labels), batch_size=64)
x_BxHxWxC, y_B = gather_batch(images_on_device, labels_on_device, idx_B)
x_BxHxWxC = augment_batch(aug_key, x_BxHxWxC, mean=ds.mean, std=ds.std, pad=4)
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

from nas_jax.data import sources
from nas_jax.data.augment import (
    augment_batch,
    cutout,
    cutout_mask,
    default_pad,
    normalize,
    random_crop,
    random_crop_flip,
    random_flip,
)
from nas_jax.data.dataset import (
    DataError,
    Dataset,
    DatasetNotPreparedError,
    channel_mean_std,
    make_dataset,
    split_train_valid,
)
from nas_jax.data.image_folder import convert_image_folder, load_image_folder, resolve_cache_dir
from nas_jax.data.sampling import (
    SAMPLERS,
    epoch_batch_indices,
    epoch_batch_mask,
    gather_batch,
    get_sampler,
    iid_batch_indices,
    steps_per_epoch,
)
from nas_jax.registry import Registry


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """A dataset the runs can name in `config.data.name`.

    load: `(split, *, data_dir) -> Dataset` (with `needs_folder`: also `folder` and
        `cache_dir`, where its conversion is kept), the whole split in host memory
        (mean/std come with it); `DatasetNotPreparedError` when files are missing,
        `DataError` (a ValueError) when they are malformed.
    image_size: pixels per side, or None where the files decide (image folders).
    num_classes: or None where the files decide.
    pad: the random-crop padding of its search and retraining augmentation.
    nb201_column: its column in the NAS-Bench-201 table, if it has one.
    needs_folder: reads `config.data.folder`.
    """

    name: str
    load: Callable[..., Dataset]
    image_size: int | None
    num_classes: int | None
    pad: int = 4
    nb201_column: str | None = None
    needs_folder: bool = False


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def register(spec: DatasetSpec) -> DatasetSpec:
    return DATASETS.register(spec.name, spec)


def _tfds_loader(name: str) -> Callable[..., Dataset]:
    def load(split: str, *, data_dir: str | None) -> Dataset:
        return sources.load_tfds(name, split, data_dir=data_dir)

    return load


for _spec in (
    DatasetSpec("digits", sources.load_digits, 8, 10, pad=1),
    DatasetSpec("cifar10", _tfds_loader("cifar10"), 32, 10, nb201_column="cifar10"),
    DatasetSpec("cifar100", _tfds_loader("cifar100"), 32, 100, nb201_column="cifar100"),
    DatasetSpec("svhn_cropped", _tfds_loader("svhn_cropped"), 32, 10),
    DatasetSpec("imagenet16_120", sources.load_imagenet16_120, 16, 120, pad=2,
                nb201_column="ImageNet16-120"),
    DatasetSpec("image_folder", load_image_folder, None, None, needs_folder=True),
):  # fmt: skip
    register(_spec)


def load_dataset(
    name: str,
    split: str,
    *,
    data_dir: str | None,
    folder: str | None = None,
    cache_dir: str | None = None,
) -> Dataset:
    """Loads a whole split into host memory.

    `folder` is the image root for datasets that read one ("image_folder", converted
    once into a TFDS dataset under `cache_dir`, default `resolve_cache_dir('')`). Raises
    `DatasetNotPreparedError` when files are missing; nothing is ever downloaded.
    """
    spec = DATASETS.get(name)
    if spec.needs_folder:
        return spec.load(split, data_dir=data_dir, folder=folder, cache_dir=cache_dir)
    for key, value in (("folder", folder), ("cache_dir", cache_dir)):
        if value is not None:
            raise ValueError(f"{key}= is only used by 'image_folder', not by {name!r}")
    return spec.load(split, data_dir=data_dir)


def dataset_label(name: str, folder: str = "") -> str:
    """How outputs (result.json, log lines) name the dataset a run reads: the registry name,
    with the folder's absolute path for a dataset read from one ('image_folder:/abs/path')."""
    if DATASETS.get(name).needs_folder and folder:
        return f"{name}:{os.path.abspath(os.path.expanduser(folder))}"
    return name


__all__ = [
    "DATASETS",
    "SAMPLERS",
    "DataError",
    "Dataset",
    "DatasetNotPreparedError",
    "DatasetSpec",
    "augment_batch",
    "channel_mean_std",
    "convert_image_folder",
    "cutout",
    "cutout_mask",
    "dataset_label",
    "default_pad",
    "epoch_batch_indices",
    "epoch_batch_mask",
    "gather_batch",
    "get_sampler",
    "iid_batch_indices",
    "load_dataset",
    "make_dataset",
    "normalize",
    "random_crop",
    "random_crop_flip",
    "random_flip",
    "register",
    "resolve_cache_dir",
    "split_train_valid",
    "steps_per_epoch",
]
