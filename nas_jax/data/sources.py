"""Loaders that turn a named dataset split into an in-memory `Dataset` (SPEC 9).

Every loader is `load_x(split, *, data_dir) -> Dataset`; the registry in
`nas_jax.data` maps names to them. Nothing here downloads: data that is not
prepared raises `DatasetNotPreparedError` saying how to prepare it.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from typing import Any

import numpy as np

from nas_jax.data.dataset import (
    DataError,
    Dataset,
    DatasetNotPreparedError,
    channel_mean_std,
    make_dataset,
)

# SPEC 9, per channel, in [0, 1] units.
TFDS_STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "cifar10": (
        (0.49139968, 0.48215827, 0.44653124),
        (0.24703233, 0.24348505, 0.26158768),
    ),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "svhn_cropped": ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
}
IMAGENET16_MEAN = tuple(v / 255 for v in (122.68, 116.66, 104.01))
IMAGENET16_STD = tuple(v / 255 for v in (63.22, 61.26, 65.09))
IMAGENET16_CLASSES = 120

# digits has no official split; the first 1,500 images (sklearn's order, which
# already cycles through the classes) train, the last 297 test.
DIGITS_NUM_TRAIN = 1500


def _check_split(name: str, split: str, valid: Sequence[str]) -> None:
    if split not in valid:
        raise ValueError(f"unknown split {split!r} for {name}; valid splits: {', '.join(valid)}")


# ---------------------------------------------------------------------------
# digits (scikit-learn, bundled, no files needed)
# ---------------------------------------------------------------------------


def load_digits(split: str, *, data_dir: str | None = None) -> Dataset:
    """sklearn's 8x8 digits as 8x8x1 uint8 (0..16 scaled to 0..255).

    Split: first 1,500 samples = "train", last 297 = "test". mean/std come from
    the train split (for both splits).
    """
    del data_dir  # bundled with scikit-learn
    _check_split("digits", split, ("train", "test"))
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    images_Nx8x8x1 = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    labels_N = bunch.target.astype(np.int32)
    mean, std = channel_mean_std(images_Nx8x8x1[:DIGITS_NUM_TRAIN])
    part = slice(None, DIGITS_NUM_TRAIN) if split == "train" else slice(DIGITS_NUM_TRAIN, None)
    return make_dataset(
        images_Nx8x8x1[part],
        labels_N[part],
        num_classes=10,
        mean=mean,
        std=std,
        name="digits",
        class_names=tuple(str(d) for d in range(10)),
    )


# ---------------------------------------------------------------------------
# TFDS datasets read through `tfds.data_source` (array_record, no TensorFlow)
# ---------------------------------------------------------------------------


def read_data_source(source: Any, chunk: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Reads every example of a TFDS random-access source into (images, labels).

    Reads in chunks with `__getitems__` (about 3x faster than item by item).
    """
    n = len(source)
    if n == 0:
        raise ValueError(f"{source!r} is empty")
    images = labels = None
    for start in range(0, n, chunk):
        examples = source.__getitems__(list(range(start, min(start + chunk, n))))
        if images is None:
            images = np.empty((n, *np.shape(examples[0]["image"])), np.uint8)
            labels = np.empty((n,), np.int32)
        for i, example in enumerate(examples, start):
            images[i] = example["image"]
            labels[i] = example["label"]
    return images, labels


def _not_prepared_message(name: str, data_dir: str | None, why: str) -> str:
    return (
        f"TFDS dataset {name!r} is not usable in data_dir={data_dir!r}: {why}. "
        "Nothing is downloaded here. Prepare it as array_record on a machine with "
        f"network access: `tfds build {name} --data_dir {data_dir or '<data_dir>'} "
        "--file_format array_record` (or in Python: tfds.builder(name, data_dir=...)"
        ".download_and_prepare(file_format='array_record')) and copy the folder over; "
        "or convert an image folder with the 'image_folder' dataset."
    )


def _raise_if_not_prepared(name: str, split: str, data_dir: str | None, error: Exception) -> None:
    """Raises `DatasetNotPreparedError` when `error` came from data that is missing or not
    prepared as array_record: no dataset_info.json, another file format, the split not
    generated, or its array_record files gone."""
    import tensorflow_datasets as tfds

    builder = tfds.builder(name, data_dir=data_dir)
    where = builder.data_dir

    def fail(why: str) -> None:
        raise DatasetNotPreparedError(_not_prepared_message(name, data_dir, why)) from error

    if not builder.is_prepared():
        fail(f"nothing prepared under {where}")
    file_format = builder.info.file_format
    if file_format is not None and file_format.value != "array_record":
        fail(f"prepared as {file_format.value}, which has no random access")
    splits = builder.info.splits
    base = split.split("[")[0]
    if base not in splits:
        fail(f"split {base!r} is not prepared under {where} (prepared: {list(splits) or 'none'})")
    try:
        paths = splits[base].filepaths
    except ValueError:  # no filename template recorded
        paths = []
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        fail(
            f"{len(missing)} of the {len(paths)} {base!r} files are missing under {where} "
            f"(e.g. {os.path.basename(missing[0])})"
        )


def load_tfds(name: str, split: str, *, data_dir: str | None) -> Dataset:
    """A prepared TFDS image classification dataset, mean/std from SPEC 9.

    `data_dir=None` is TFDS's default (`$TFDS_DATA_DIR` or ~/tensorflow_datasets); an
    empty string is refused (TFDS would read it as the working directory). Data that is
    missing or not prepared as array_record raises `DatasetNotPreparedError`.
    """
    if name not in TFDS_STATS:
        raise ValueError(f"no mean/std for {name!r}; known: {', '.join(sorted(TFDS_STATS))}")
    if data_dir is not None and not data_dir.strip():
        raise DatasetNotPreparedError(
            _not_prepared_message(name, data_dir, "data_dir is empty (set it to a folder)")
        )
    import tensorflow_datasets as tfds

    try:
        source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
        images, labels = read_data_source(source)  # array_record opens files lazily
    except (AssertionError, KeyError, NotImplementedError, OSError, RuntimeError) as error:
        # What tfds 4.9 raises for: no dataset_info.json (AssertionError), dataset_info.json
        # without splits (KeyError), a tfrecord dataset (NotImplementedError), array_record
        # files gone (RuntimeError from array_record's open(), on the first read).
        _raise_if_not_prepared(name, split, data_dir, error)
        raise
    label_feature = source.dataset_info.features["label"]
    mean, std = TFDS_STATS[name]
    return make_dataset(
        images,
        labels,
        num_classes=label_feature.num_classes,
        mean=mean,
        std=std,
        name=name,
        class_names=tuple(label_feature.names),
    )


# ---------------------------------------------------------------------------
# ImageNet16-120 (NAS-Bench-201 pickles)
# ---------------------------------------------------------------------------

IMAGENET16_FILES = {
    "train": tuple(f"train_data_batch_{i}" for i in range(1, 11)),
    "test": ("val_data",),
}


def _read_imagenet16_pickle(path: str) -> tuple[np.ndarray, np.ndarray]:
    """One NAS-Bench-201 ImageNet16 file: a Python pickle of {'data': N x 768, 'labels': N}.

    Unpickling runs whatever code the file holds: only a trusted file is safe to read. A
    file that fails to unpickle or holds something else raises `DataError` naming it.
    """
    try:
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
        data_Nx768 = np.asarray(entry["data"], np.uint8)
        images_NxHxWxC = data_Nx768.reshape(-1, 3, 16, 16).transpose(0, 2, 3, 1)
        labels_N = np.asarray(entry["labels"], np.int64)
    except Exception as e:  # a damaged or foreign pickle can raise almost anything
        why = " ".join(str(e).split()) or type(e).__name__
        raise DataError(
            f"{path}: not a NAS-Bench-201 ImageNet16 file ({type(e).__name__}: {why}). It is "
            "a Python pickle, which can run code when loaded: load only files from a trusted "
            "source (the NAS-Bench-201 downsampled ImageNet16 release)"
        ) from e
    return images_NxHxWxC, labels_N


def load_imagenet16_120(split: str, *, data_dir: str | None) -> Dataset:
    """`<data_dir>/imagenet16/{train_data_batch_1..10, val_data}`, labels 1..120 kept.

    "train" is the ten train batches (151,700 images for the real data), "test" is
    `val_data` (6,000). Target = label - 1. Files are not md5-checked.

    The files are Python pickles (the format NAS-Bench-201 distributes them in), and
    unpickling runs any code a crafted file holds: load them only from a trusted source.
    A file that fails to unpickle raises `DataError` saying so.
    """
    _check_split("imagenet16_120", split, tuple(IMAGENET16_FILES))
    folder = os.path.join(data_dir or "", "imagenet16")
    paths = [os.path.join(folder, f) for f in IMAGENET16_FILES[split]]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise DatasetNotPreparedError(
            f"ImageNet16-120 files missing in {folder!r}: "
            f"{', '.join(os.path.basename(p) for p in missing)}. Download the NAS-Bench-201 "
            "downsampled ImageNet 16x16 pickles (train_data_batch_1..10, val_data) and "
            f"place them under {folder!r}."
        )
    parts = [_read_imagenet16_pickle(p) for p in paths]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    keep = (labels >= 1) & (labels <= IMAGENET16_CLASSES)
    return make_dataset(
        images[keep],
        labels[keep] - 1,
        num_classes=IMAGENET16_CLASSES,
        mean=IMAGENET16_MEAN,
        std=IMAGENET16_STD,
        name="imagenet16_120",
    )
