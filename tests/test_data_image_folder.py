"""image_folder: conversion to a TFDS dataset (array_record) once, read back through TFDS."""

import json
import os
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nas_jax.data import (
    DatasetNotPreparedError,
    channel_mean_std,
    convert_image_folder,
    image_folder,
    load_dataset,
    split_train_valid,
)

ARCHIVE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "cifar10-jpeg-q75.tar.gz"
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
needs_archive = pytest.mark.skipif(not ARCHIVE.is_file(), reason=f"{ARCHIVE} not present")


def _save(path, pixels_HxWxC, **kwargs):
    gray = pixels_HxWxC.shape[-1] == 1
    Image.fromarray(pixels_HxWxC[..., 0] if gray else pixels_HxWxC).save(path, **kwargs)


def _make_folder(root, shape=(5, 4, 3)):
    """3 classes (created unsorted), PNG images with random pixels plus one flat JPEG.

    Returns {(split, class): [uint8 images]} for the PNGs.
    """
    rng = np.random.default_rng(1)
    pngs = {}
    for split, count in (("train", 4), ("test", 2)):
        for name in ("cat", "ant", "bee"):
            os.makedirs(root / split / name)
            for i in range(count):
                pixels = rng.integers(0, 256, shape, dtype=np.uint8)
                _save(root / split / name / f"{i}.png", pixels)
                pngs.setdefault((split, name), []).append(pixels)
    flat = np.full(shape, 200, np.uint8)
    _save(root / "train" / "bee" / "flat.JPG", flat, quality=95)
    (root / "train" / "bee" / "notes.txt").write_text("not an image")
    return pngs


def test_round_trip_labels_pixels_and_stats(tmp_path):
    root = tmp_path / "pets"
    pngs = _make_folder(root)
    cache = str(tmp_path / "cache")
    train = load_dataset("image_folder", "train", data_dir=None, cache_dir=cache, folder=str(root))
    test = load_dataset("image_folder", "test", data_dir=None, cache_dir=cache, folder=str(root))

    assert train.class_names == ("ant", "bee", "cat") and train.num_classes == 3
    assert train.images.shape == (13, 5, 4, 3) and test.images.shape == (6, 5, 4, 3)
    assert train.images.dtype == np.uint8 and train.labels.dtype == np.int32
    for ds, split in ((train, "train"), (test, "test")):
        seen = 0
        for image, label in zip(ds.images, ds.labels):
            if np.all(image == 200) or np.abs(image.astype(int) - 200).max() <= 2:
                assert ds.class_names[label] == "bee" and split == "train"  # the JPEG
                continue
            # every PNG comes back bit-exact under the label of its sorted class name
            matches = [
                name for (s, name), images in pngs.items()
                if s == split and any(np.array_equal(image, p) for p in images)
            ]  # fmt: skip
            assert matches == [ds.class_names[label]]
            seen += 1
        assert seen == sum(len(v) for (s, _), v in pngs.items() if s == split)
    # stored order is a fixed shuffle, not class-sorted (so the index-order split mixes classes)
    assert list(train.labels) != sorted(train.labels)
    assert len(set(split_train_valid(train, 0.5)[0].labels)) > 1
    # mean/std are the train split's, shared by test
    assert train.mean == pytest.approx(channel_mean_std(train.images)[0])
    assert train.std == pytest.approx(channel_mean_std(train.images)[1])
    assert (test.mean, test.std) == (train.mean, train.std)


def test_conversion_is_cached_and_location_independent(tmp_path, monkeypatch):
    root = tmp_path / "a" / "pets"
    _make_folder(root)
    cache = str(tmp_path / "cache")
    first_dir = convert_image_folder(str(root), cache)
    info = Path(first_dir) / "dataset_info.json"
    assert info.is_file() and json.loads(info.read_text())["fileFormat"] == "array_record"
    assert any(p.name.startswith(image_folder.BUILDER_NAME) for p in Path(first_dir).iterdir())
    before = info.stat().st_mtime_ns
    expected = load_dataset(
        "image_folder", "train", data_dir=None, cache_dir=cache, folder=str(root)
    )

    def fail(*args, **kwargs):
        raise AssertionError("decoded again instead of reusing the conversion")

    monkeypatch.setattr(image_folder, "decode_split", fail)
    moved = tmp_path / "b" / "pets"
    shutil.copytree(root, moved)
    assert convert_image_folder(str(root), cache) == first_dir
    assert convert_image_folder(str(moved), cache) == first_dir
    again = load_dataset("image_folder", "train", data_dir=None, cache_dir=cache, folder=str(moved))
    np.testing.assert_array_equal(again.images, expected.images)
    np.testing.assert_array_equal(again.labels, expected.labels)
    assert info.stat().st_mtime_ns == before

    # negative control: changed content is a new dataset, so it is decoded (and fails here)
    Image.fromarray(np.zeros((5, 4, 3), np.uint8)).save(moved / "train" / "ant" / "new.png")
    with pytest.raises(AssertionError, match="decoded again"):
        convert_image_folder(str(moved), cache)


def test_grayscale_and_train_only_folder(tmp_path):
    root = tmp_path / "gray"
    pngs = _make_folder(root, shape=(3, 3, 1))
    shutil.rmtree(root / "test")
    (root / "train" / "bee" / "flat.JPG").unlink()
    ds = load_dataset(
        "image_folder", "train", data_dir=None, cache_dir=str(tmp_path / "d"), folder=str(root)
    )
    assert ds.images.shape == (12, 3, 3, 1) and len(ds.mean) == 1
    assert any(
        np.array_equal(ds.images[0], p) for p in pngs[("train", ds.class_names[ds.labels[0]])]
    )
    with pytest.raises(ValueError, match="valid splits: train"):
        load_dataset(
            "image_folder", "test", data_dir=None, cache_dir=str(tmp_path / "d"), folder=str(root)
        )


def test_mixed_sizes_and_bad_layouts_raise(tmp_path):
    root = tmp_path / "mixed"
    _make_folder(root)
    Image.fromarray(np.zeros((6, 4, 3), np.uint8)).save(root / "test" / "cat" / "big.png")
    with pytest.raises(ValueError, match="one size"):
        convert_image_folder(str(root), str(tmp_path / "d"))
    with pytest.raises(DatasetNotPreparedError, match="no 'train' subfolder"):
        convert_image_folder(str(tmp_path / "nowhere"), str(tmp_path / "d"))
    (root / "test" / "cat" / "big.png").unlink()
    os.makedirs(root / "test" / "dog")
    with pytest.raises(ValueError, match="missing from train"):
        convert_image_folder(str(root), str(tmp_path / "d"))
    with pytest.raises(ValueError, match="needs folder="):
        load_dataset("image_folder", "train", data_dir=str(tmp_path / "d"))


def _extract_subset(dest, per_class):
    """Streams the archive, extracting the first `per_class[split]` files of each class."""
    taken = {}
    with tarfile.open(ARCHIVE, "r|gz") as archive:
        for member in archive:
            parts = member.name.split("/")
            if not member.isfile() or len(parts) != 3:
                continue
            key = (parts[0], parts[1])
            if taken.get(key, 0) < per_class[parts[0]]:
                taken[key] = taken.get(key, 0) + 1
                archive.extract(member, dest, filter="data")
            if len(taken) == 20 and all(
                taken[k] == per_class[k[0]] for k in taken
            ):  # fmt: skip
                break


@needs_archive
def test_real_cifar10_jpeg_subset(tmp_path):
    root = tmp_path / "cifar10"
    _extract_subset(root, {"train": 20, "test": 5})
    cache = str(tmp_path / "cache")
    train = load_dataset("image_folder", "train", data_dir=None, cache_dir=cache, folder=str(root))
    test = load_dataset("image_folder", "test", data_dir=None, cache_dir=cache, folder=str(root))
    assert train.class_names == CIFAR10_CLASSES
    assert train.images.shape == (200, 32, 32, 3) and test.images.shape == (
        50,
        32,
        32,
        3,
    )
    np.testing.assert_array_equal(np.bincount(train.labels), [20] * 10)
    np.testing.assert_array_equal(np.bincount(test.labels), [5] * 10)
    assert all(0.3 < m < 0.6 for m in train.mean) and all(0.15 < s < 0.35 for s in train.std)


@pytest.mark.slow
@needs_archive
def test_real_cifar10_jpeg_full(tmp_path):
    root = tmp_path / "cifar10"
    with tarfile.open(ARCHIVE, "r:gz") as archive:
        archive.extractall(root, filter="data")
    cache = str(tmp_path / "cache")
    train = load_dataset("image_folder", "train", data_dir=None, cache_dir=cache, folder=str(root))
    test = load_dataset("image_folder", "test", data_dir=None, cache_dir=cache, folder=str(root))
    assert train.images.shape == (50000, 32, 32, 3) and test.images.shape == (
        10000,
        32,
        32,
        3,
    )
    np.testing.assert_array_equal(np.bincount(train.labels), [5000] * 10)
    # JPEG q75 moves the statistics only slightly from CIFAR-10's (SPEC 9)
    np.testing.assert_allclose(train.mean, (0.4914, 0.4822, 0.4465), atol=0.005)
    np.testing.assert_allclose(train.std, (0.2470, 0.2435, 0.2616), atol=0.005)
    first_half, _ = split_train_valid(train, 0.5)
    assert np.bincount(first_half.labels).min() > 2300  # shuffled, so classes are balanced
