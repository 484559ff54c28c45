"""Image folders (`<root>/train/<class>/*.png|jpg`) converted once into a TFDS dataset.

The conversion decodes every image with Pillow and writes a TFDS dataset in
array_record format with a custom `GeneratorBasedBuilder` (no TensorFlow needed;
`tfds.dataset_builders.store_as_tfds_dataset` cannot be used because its adhoc
builder touches `tf.data`). It lives in nas_jax's cache (`config.data.cache_dir`;
'' = `$XDG_CACHE_HOME/nas_jax`, else `~/.cache/nas_jax`), not in a TFDS data_dir:

    <cache_dir>/image_folder/<folder name>_<fingerprint>/

where the fingerprint hashes every image's relative path, byte size and mtime
(seconds), so the same images are converted once wherever the folder sits (copies
that keep mtimes, e.g. `cp -p`, tar extraction) and changed images get a new
dataset. A conversion is built in `<name>.incomplete-*` next to its target and renamed
into place when complete, so an interrupted one is never read (its leftover folder can be
deleted). Nothing deletes superseded conversions (`rm -r <cache_dir>/image_folder` does).
TFDS's own output (progress bars, "Downloading and preparing", absl lines) is silenced;
one log line says what is converted or reused.

Features: `image` = uint8 Tensor(H, W, C) stored as raw bytes, `label` = ClassLabel
with the class folder names sorted alphabetically (label id = rank). Metadata:
per-channel mean/std of the train split (pixel / 255) and the source folder.

Example order: each split is stored in a fixed pseudo-random order (numpy
seed 0 permutation of the sorted file list), so that the index-order search
split (SPEC 6.1) gets all classes in both halves, like torchvision's CIFAR order.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds

from nas_jax.data.dataset import (
    DataError,
    Dataset,
    DatasetNotPreparedError,
    channel_mean_std,
    make_dataset,
)
from nas_jax.data.sources import read_data_source
from nas_jax.reporting import logger

BUILDER_NAME = "nas_jax_image_folder"
VERSION = "1.0.0"
SPLITS = ("train", "test")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
ORDER_SEED = 0
FEW_IMAGES_PER_CLASS = 10  # fewer train images in a class: a WARNING
_GRAY_MODES = ("1", "L", "LA")
_COLOR_MODES = ("RGB", "RGBA", "P", "PA", "CMYK", "YCbCr")
CACHE_SUBDIR = "image_folder"  # conversions: <cache_dir>/image_folder/<config name>/
_announced: set[str] = set()  # conversions whose reuse this process has logged


def resolve_cache_dir(cache_dir: str | None) -> str:
    """nas_jax's cache folder: `cache_dir` (~ expanded), or for ''/None
    `$XDG_CACHE_HOME/nas_jax`, else `~/.cache/nas_jax`."""
    if cache_dir:
        return os.path.abspath(os.path.expanduser(cache_dir))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.abspath(os.path.join(base, "nas_jax"))


def list_image_folder(
    folder: str,
) -> tuple[tuple[str, ...], dict[str, list[tuple[str, int]]]]:
    """Returns (sorted class names, {split: [(relative path, label), ...]}) sorted by path.

    Raises `DataError` (one line naming the folder) for fewer than 2 train classes and for
    a class folder without images; logs a WARNING for train classes with fewer than
    `FEW_IMAGES_PER_CLASS` images.
    """
    train_dir = os.path.join(folder, "train")
    if not os.path.isdir(train_dir):
        raise DatasetNotPreparedError(
            f"image folder {folder!r} has no 'train' subfolder; expected "
            "<folder>/train/<class>/*.{jpg,jpeg,png} (and optionally <folder>/test/<class>/...)"
        )
    class_names = tuple(
        sorted(d for d in os.listdir(train_dir) if os.path.isdir(os.path.join(train_dir, d)))
    )
    if len(class_names) < 2:
        found = f"only the class {class_names[0]!r}" if class_names else "no class folders"
        raise DataError(
            f"{train_dir} holds {found}; a classifier needs at least 2 classes "
            "(one subfolder of images per class: train/<class>/*.{jpg,jpeg,png})"
        )
    files: dict[str, list[tuple[str, int]]] = {}
    for split in SPLITS:
        split_dir = os.path.join(folder, split)
        if not os.path.isdir(split_dir):
            continue
        subdirs = {d for d in os.listdir(split_dir) if os.path.isdir(os.path.join(split_dir, d))}
        unknown = sorted(subdirs - set(class_names))
        if unknown:
            raise DataError(f"{split_dir!r} has classes missing from train: {unknown}")
        entries, counts = [], {}
        for label, name in enumerate(class_names):
            class_dir = os.path.join(split_dir, name)
            if not os.path.isdir(class_dir):
                continue
            images = [f for f in sorted(os.listdir(class_dir)) if _is_image(class_dir, f)]
            if not images:
                raise DataError(
                    f"class folder {class_dir} holds no {'/'.join(IMAGE_EXTENSIONS)} images; "
                    "add images or remove the folder"
                )
            entries.extend((f"{split}/{name}/{file}", label) for file in images)
            counts[name] = len(images)
        if not entries:
            raise DataError(f"{split_dir!r} holds no {'/'.join(IMAGE_EXTENSIONS)} images")
        few = {name: n for name, n in counts.items() if n < FEW_IMAGES_PER_CLASS}
        if split == "train" and few:
            logger.warning(
                "%s: few images in class %s; a search split halves them and the results "
                "will be noisy (fewer than %d images per class)",
                split_dir,
                ", ".join(f"{name!r} ({n})" for name, n in few.items()),
                FEW_IMAGES_PER_CLASS,
            )
        files[split] = entries
    return class_names, files


def _is_image(class_dir: str, file: str) -> bool:
    return file.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(class_dir, file))


def fingerprint(folder: str, files: dict[str, list[tuple[str, int]]]) -> str:
    """Hash of every image's relative path, label, size and mtime (not its location)."""
    digest = hashlib.sha256()
    for split in sorted(files):
        for path, label in files[split]:
            stat = os.stat(os.path.join(folder, path))
            digest.update(f"{path}\0{label}\0{stat.st_size}\0{int(stat.st_mtime)}\n".encode())
    return digest.hexdigest()[:16]


def decode_image(path: str) -> np.ndarray:
    """One image file as uint8 H x W x C (C = 1 for grayscale, 3 otherwise; alpha dropped).

    A file Pillow cannot decode (truncated, not an image) raises `DataError` naming it.
    """
    from PIL import Image

    try:
        with Image.open(path) as image:
            if image.mode in _GRAY_MODES:
                return np.asarray(image.convert("L"), np.uint8)[..., None]
            if image.mode in _COLOR_MODES:
                return np.asarray(image.convert("RGB"), np.uint8)
            mode = image.mode
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        why = " ".join(str(e).split()) or type(e).__name__
        raise DataError(
            f"{path}: cannot decode the image ({why}); re-export or remove the file"
        ) from e
    raise DataError(
        f"{path}: unsupported image mode {mode!r} (8-bit gray or color only); "
        "re-export or remove the file"
    )


def decode_split(folder: str, entries: list[tuple[str, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Decodes a split in the stored order; every image must have the first one's shape."""
    order = np.random.default_rng(ORDER_SEED).permutation(len(entries))
    first = decode_image(os.path.join(folder, entries[order[0]][0]))
    images = np.empty((len(entries), *first.shape), np.uint8)
    labels = np.empty((len(entries),), np.int32)
    for i, j in enumerate(order):
        path, label = entries[j]
        image = first if i == 0 else decode_image(os.path.join(folder, path))
        if image.shape != first.shape:
            raise DataError(
                f"{folder}: images must all have one size: {path} is {image.shape}, "
                f"{entries[order[0]][0]} is {first.shape} (resize the folder first)"
            )
        images[i] = image
        labels[i] = label
    return images, labels


class _ImageFolderBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Writes in-memory arrays as a TFDS dataset; read back with `builder_from_directory`."""

    name = BUILDER_NAME
    VERSION = tfds.core.Version(VERSION)

    def __init__(self, *, arrays, class_names, metadata, **kwargs):
        self._arrays = arrays
        self._class_names = class_names
        self._metadata = metadata
        super().__init__(**kwargs)

    # TFDS prints "Downloading and preparing dataset Unknown size ..." and "Dataset ...
    # downloaded and prepared" to stdout (termcolor, not logging); `convert_image_folder`
    # logs one line of its own instead.
    def _log_download_bytes(self) -> None:
        pass

    def _log_download_done(self) -> None:
        pass

    def _info(self) -> tfds.core.DatasetInfo:
        image_shape = next(iter(self._arrays.values()))[0].shape[1:]
        return tfds.core.DatasetInfo(
            builder=self,
            description="Image folder converted by nas_jax.data.image_folder.",
            features=tfds.features.FeaturesDict(
                {
                    # Raw bytes: ~10x faster to write and read than an int64 list.
                    "image": tfds.features.Tensor(
                        shape=image_shape,
                        dtype=np.uint8,
                        encoding=tfds.features.Encoding.BYTES,
                    ),
                    "label": tfds.features.ClassLabel(names=self._class_names),
                }
            ),
            disable_shuffling=True,  # keep the fixed order written by decode_split
            metadata=tfds.core.MetadataDict(self._metadata),
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        return {split: self._generate_examples(split) for split in self._arrays}

    def _generate_examples(self, split: str) -> Iterator[tuple[int, dict]]:
        images, labels = self._arrays[split]
        for i in range(len(labels)):
            yield i, {"image": images[i], "label": int(labels[i])}


def _config_name(folder: str, digest: str) -> str:
    base = re.sub(r"[^A-Za-z0-9]+", "_", os.path.basename(os.path.normpath(folder))).strip("_")
    return f"{base.lower() or 'folder'}_{digest}"


@contextlib.contextmanager
def _quiet_tfds() -> Iterator[None]:
    """No TFDS progress bars (carriage returns and cursor escapes in a log) and no absl lines
    below ERROR ("Using custom data configuration", "Generating dataset", "Load dataset
    info") while TFDS builds or opens a conversion; both restored after."""
    from tensorflow_datasets.core.utils import tqdm_utils

    absl_logger = logging.getLogger("absl")
    level, bars = absl_logger.level, getattr(tqdm_utils, "_active", True)
    absl_logger.setLevel(logging.ERROR)
    tfds.disable_progress_bar()
    try:
        yield
    finally:
        absl_logger.setLevel(level)
        tfds.display_progress_bar(bars)


def convert_image_folder(folder: str, cache_dir: str | None = None) -> str:
    """Converts `folder` into a TFDS dataset under `<cache_dir>/image_folder/` once (see the
    module docstring; `cache_dir` as in `resolve_cache_dir`); returns its directory."""
    folder = os.path.expanduser(folder)
    class_names, files = list_image_folder(folder)
    config = _config_name(folder, fingerprint(folder, files))
    root = os.path.join(resolve_cache_dir(cache_dir), CACHE_SUBDIR)
    dataset_dir = os.path.join(root, config)
    source = os.path.abspath(folder)
    if os.path.isfile(os.path.join(dataset_dir, "dataset_info.json")):
        if dataset_dir not in _announced:
            logger.info("Image folder %s: reusing its conversion in %s", source, dataset_dir)
            _announced.add(dataset_dir)
        return dataset_dir
    logger.info(
        "Converting image folder %s (%d images, %d classes) into %s (once; reused while the "
        "folder is unchanged)",
        source, sum(map(len, files.values())), len(class_names), dataset_dir,
    )  # fmt: skip
    arrays = {split: decode_split(folder, entries) for split, entries in files.items()}
    shapes = {split: images.shape[1:] for split, (images, _) in arrays.items()}
    if len(set(shapes.values())) > 1:
        raise DataError(f"{folder}: images must all have one size, got per split {shapes}")
    mean, std = channel_mean_std(arrays["train"][0])
    os.makedirs(root, exist_ok=True)
    # Built next to the target and renamed when complete: a conversion that is interrupted
    # leaves only this folder, whose name is never read.
    build_dir = tempfile.mkdtemp(prefix=f"{config}.incomplete-", dir=root)
    try:
        with _quiet_tfds():
            builder = _ImageFolderBuilder(
                arrays=arrays,
                class_names=list(class_names),
                metadata={"mean": list(mean), "std": list(std), "source": source},
                config=tfds.core.BuilderConfig(name=config),
                data_dir=build_dir,
                file_format="array_record",
            )
            builder.download_and_prepare(
                download_dir=os.path.join(build_dir, "downloads"), file_format="array_record"
            )
        try:
            os.rename(builder.data_dir, dataset_dir)
        except OSError:  # another process finished the same conversion first
            if not os.path.isfile(os.path.join(dataset_dir, "dataset_info.json")):
                raise
    finally:
        shutil.rmtree(build_dir, ignore_errors=True)
    _announced.add(dataset_dir)
    return dataset_dir


def load_image_folder(
    split: str, *, data_dir: str | None, folder: str | None, cache_dir: str | None = None
) -> Dataset:
    """Converts (first call) and loads a split; mean/std are the train split's.

    `data_dir` (where TFDS datasets are prepared) is not used: conversions go to nas_jax's
    cache (`cache_dir`, see `resolve_cache_dir`).
    """
    del data_dir
    if folder is None:
        raise ValueError("the 'image_folder' dataset needs folder=<root with train/<class>/...>")
    folder = os.path.expanduser(folder)
    dataset_dir = convert_image_folder(folder, cache_dir)
    with _quiet_tfds():
        builder = tfds.builder_from_directory(dataset_dir)
    if split not in builder.info.splits:
        raise ValueError(
            f"unknown split {split!r} for image folder {folder!r}; "
            f"valid splits: {', '.join(builder.info.splits)}"
        )
    images, labels = read_data_source(builder.as_data_source(split=split))
    label_feature = builder.info.features["label"]
    return make_dataset(
        images,
        labels,
        num_classes=label_feature.num_classes,
        mean=tuple(builder.info.metadata["mean"]),
        std=tuple(builder.info.metadata["std"]),
        name=f"image_folder:{os.path.abspath(folder)}",  # as `data.dataset_label` names it
        class_names=tuple(label_feature.names),
    )
