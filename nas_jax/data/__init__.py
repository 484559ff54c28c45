"""Datasets in host memory, the search split, on-device batches and augmentation.

ds = load_dataset("cifar10", "train", data_dir="/data/tfds")
train_half, valid_half = split_train_valid(ds, 0.5)
idx_B = get_sampler("iid")(key, step, num_examples=len(train_half.labels), batch_size=64)
x_BxHxWxC, y_B = gather_batch(images_on_device, labels_on_device, idx_B)
x_BxHxWxC = augment_batch(aug_key, x_BxHxWxC, mean=ds.mean, std=ds.std, pad=4)
"""

from __future__ import annotations

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
    Dataset,
    DatasetNotPreparedError,
    channel_mean_std,
    make_dataset,
    split_train_valid,
)
from nas_jax.data.image_folder import convert_image_folder, load_image_folder
from nas_jax.data.sampling import (
    SAMPLERS,
    epoch_batch_indices,
    epoch_batch_mask,
    gather_batch,
    get_sampler,
    iid_batch_indices,
    steps_per_epoch,
)


def _tfds_loader(name: str) -> Callable[..., Dataset]:
    def load(split: str, *, data_dir: str | None) -> Dataset:
        return sources.load_tfds(name, split, data_dir=data_dir)

    return load


LOADERS: dict[str, Callable[..., Dataset]] = {
    "digits": sources.load_digits,
    "cifar10": _tfds_loader("cifar10"),
    "cifar100": _tfds_loader("cifar100"),
    "svhn_cropped": _tfds_loader("svhn_cropped"),
    "imagenet16_120": sources.load_imagenet16_120,
    "image_folder": load_image_folder,
}


def load_dataset(
    name: str, split: str, *, data_dir: str | None, folder: str | None = None
) -> Dataset:
    """Loads a whole split into host memory.

    `folder` is the image root for "image_folder" only (converted once into a TFDS
    dataset under `data_dir`). Raises `DatasetNotPreparedError` when files are missing;
    nothing is ever downloaded.
    """
    if name not in LOADERS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(LOADERS)}")
    if name == "image_folder":
        return load_image_folder(split, data_dir=data_dir, folder=folder)
    if folder is not None:
        raise ValueError(f"folder= is only used by 'image_folder', not by {name!r}")
    return LOADERS[name](split, data_dir=data_dir)


__all__ = [
    "LOADERS",
    "SAMPLERS",
    "Dataset",
    "DatasetNotPreparedError",
    "augment_batch",
    "channel_mean_std",
    "convert_image_folder",
    "cutout",
    "cutout_mask",
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
    "split_train_valid",
    "steps_per_epoch",
]
