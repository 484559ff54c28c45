"""Loaders: digits, TFDS (mocked, offline), missing data, ImageNet16-120 pickles, search split."""

import os
import pickle
import socket

import numpy as np
import pytest
import tensorflow_datasets as tfds

from nas_jax.data import (
    Dataset,
    DatasetNotPreparedError,
    load_dataset,
    make_dataset,
    split_train_valid,
)
from nas_jax.data.sources import IMAGENET16_MEAN, IMAGENET16_STD, TFDS_STATS

# --------------------------------------------------------------------------- digits


def test_digits_split_sizes_and_ranges():
    train = load_dataset("digits", "train", data_dir=None)
    test = load_dataset("digits", "test", data_dir=None)
    assert train.images.shape == (1500, 8, 8, 1) and test.images.shape == (297, 8, 8, 1)
    assert train.images.dtype == np.uint8 and train.labels.dtype == np.int32
    assert train.images.min() == 0 and train.images.max() == 255  # 0..16 scaled
    assert set(np.unique(train.labels)) == set(range(10)) == set(np.unique(test.labels))
    assert train.num_classes == 10 and len(train.mean) == len(train.std) == 1
    # mean/std are the train split's, shared by the test split
    x = train.images / 255.0
    np.testing.assert_allclose(train.mean, [x.mean()], rtol=1e-6)
    np.testing.assert_allclose(train.std, [x.std()], rtol=1e-6)
    assert test.mean == train.mean and test.std == train.std


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError, match="accepted: digits, cifar10"):
        load_dataset("mnist", "train", data_dir=None)
    with pytest.raises(ValueError, match="valid splits: train, test"):
        load_dataset("digits", "valid", data_dir=None)
    with pytest.raises(ValueError, match="only used by 'image_folder'"):
        load_dataset("digits", "train", data_dir=None, folder="/x")


# --------------------------------------------------------------------------- TFDS


@pytest.mark.parametrize(
    "name, num_classes", [("cifar10", 10), ("cifar100", 100), ("svhn_cropped", 10)]
)
def test_tfds_datasets_through_mocked_data_source(
    name, num_classes, tmp_path, no_network, per_item_mock_reads
):
    with tfds.testing.mock_data(num_examples=12, policy=tfds.testing.MockPolicy.USE_CODE):
        ds = load_dataset(name, "train", data_dir=str(tmp_path))
    assert isinstance(ds, Dataset) and ds.name == name
    assert ds.images.shape == (12, 32, 32, 3) and ds.images.dtype == np.uint8
    assert ds.labels.shape == (12,) and ds.labels.dtype == np.int32
    assert ds.num_classes == num_classes == len(ds.class_names)
    assert (ds.mean, ds.std) == TFDS_STATS[name]
    assert ds.labels.min() >= 0 and ds.labels.max() < num_classes


def test_cifar10_read_for_real_from_a_tiny_array_record_copy(tmp_path, no_network):
    """No mock: TFDS's own cifar10 builder writes 6 PNG-encoded examples, we read them."""
    from PIL import Image
    from tensorflow_datasets.image_classification import cifar

    class TinyCifar10(cifar.Cifar10, skip_registration=True):
        name = "cifar10"

        def _split_generators(self, dl_manager):
            return {
                "train": self._generate_examples(6),
                "test": self._generate_examples(2),
            }

        def _generate_examples(self, n):
            for i in range(n):
                pixels = np.full((32, 32, 3), 10 * i, np.uint8)
                pixels[0, 0] = (1, 2, 3)
                example = {
                    "id": f"{i}",
                    "image": Image.fromarray(pixels),
                    "label": 9 - i,
                }
                yield i, example

    builder = TinyCifar10(data_dir=str(tmp_path), file_format="array_record")
    builder.download_and_prepare(download_dir=str(tmp_path / "downloads"))
    ds = load_dataset("cifar10", "train", data_dir=str(tmp_path))
    assert ds.images.shape == (6, 32, 32, 3) and ds.num_classes == 10
    assert (ds.mean, ds.std) == TFDS_STATS["cifar10"]
    # PNG decoding is exact; every image still carries its own label (TFDS may reorder)
    np.testing.assert_array_equal(ds.images[:, 0, 0], np.tile([1, 2, 3], (6, 1)))
    np.testing.assert_array_equal(ds.labels, 9 - ds.images[:, 5, 5, 0] // 10)
    assert sorted(ds.labels) == [4, 5, 6, 7, 8, 9]


def test_missing_tfds_data_raises_one_clear_error(tmp_path, no_network):
    with pytest.raises(DatasetNotPreparedError) as info:
        load_dataset("cifar10", "train", data_dir=str(tmp_path))
    message = str(info.value)
    assert "'cifar10'" in message and str(tmp_path) in message
    assert "tfds build cifar10" in message and "array_record" in message


def test_tfds_prepared_as_tfrecord_is_rejected_clearly(tmp_path, no_network):
    # A dataset_info.json without array_record files: prepared in another format.
    builder_dir = tmp_path / "svhn_cropped" / "3.1.0"
    builder_dir.mkdir(parents=True)
    src = tfds.builder("svhn_cropped", data_dir=str(tmp_path / "unused"))
    src.info.write_to_directory(builder_dir)
    with pytest.raises(DatasetNotPreparedError, match="tfrecord"):
        load_dataset("svhn_cropped", "train", data_dir=str(tmp_path))


# --------------------------------------------------------------------------- ImageNet16-120


def _write_imagenet16(folder, per_file_labels):
    os.makedirs(folder)
    rng = np.random.default_rng(0)
    written = {}
    for file, labels in per_file_labels.items():
        data = rng.integers(0, 256, (len(labels), 768), dtype=np.uint8)
        with open(os.path.join(folder, file), "wb") as f:
            pickle.dump({"data": data, "labels": list(labels)}, f)
        written[file] = (data, np.asarray(labels))
    return written


def test_imagenet16_120_filters_labels_and_offsets(tmp_path, no_network):
    files = {f"train_data_batch_{i}": [i, 120, 121, 1000, 1] for i in range(1, 11)}
    files["val_data"] = [3, 500, 120]
    written = _write_imagenet16(tmp_path / "imagenet16", files)

    train = load_dataset("imagenet16_120", "train", data_dir=str(tmp_path))
    test = load_dataset("imagenet16_120", "test", data_dir=str(tmp_path))
    expected = np.concatenate([[i - 1, 119, 0] for i in range(1, 11)])
    np.testing.assert_array_equal(train.labels, expected)
    np.testing.assert_array_equal(test.labels, [2, 119])
    assert train.images.shape == (30, 16, 16, 3) and train.num_classes == 120
    assert (train.mean, train.std) == (IMAGENET16_MEAN, IMAGENET16_STD)
    # rows are CHW-flattened: first 256 values are the red plane
    data, _ = written["train_data_batch_1"]
    np.testing.assert_array_equal(train.images[0, :, :, 0], data[0, :256].reshape(16, 16))
    np.testing.assert_array_equal(train.images[0, 0, 1, :], data[0, [1, 257, 513]])
    np.testing.assert_array_equal(test.images[1], data_to_hwc(written["val_data"][0][2]))


def data_to_hwc(row_768):
    return row_768.reshape(3, 16, 16).transpose(1, 2, 0)


def test_imagenet16_missing_files_named(tmp_path):
    _write_imagenet16(tmp_path / "imagenet16", {"val_data": [1]})
    with pytest.raises(DatasetNotPreparedError, match="train_data_batch_1, .*train_data_batch_10"):
        load_dataset("imagenet16_120", "train", data_dir=str(tmp_path))


# --------------------------------------------------------------------------- search split


def _fake(n):
    images = (np.arange(n) % 256).astype(np.uint8).reshape(n, 1, 1, 1)
    return make_dataset(
        images, np.arange(n) % 10, num_classes=10, mean=(0.5,), std=(0.25,), name="fake"
    )


@pytest.mark.parametrize("n, first", [(50000, 25000), (73257, 36628), (151700, 75850)])
def test_split_train_valid_sizes_follow_spec(n, first):
    train, valid = split_train_valid(_fake(n), 0.5)
    assert (len(train.labels), len(valid.labels)) == (first, n - first)
    assert (len(train.images), len(valid.images)) == (first, n - first)


def test_split_train_valid_keeps_index_order_and_stats():
    ds = _fake(10)
    train, valid = split_train_valid(ds, 0.7)
    np.testing.assert_array_equal(train.labels, np.arange(7))
    np.testing.assert_array_equal(valid.labels, np.arange(7, 10))
    np.testing.assert_array_equal(valid.images[:, 0, 0, 0], np.arange(7, 10))
    assert train.mean == valid.mean == ds.mean
    for bad in (0.0, 1.0, 0.05):
        with pytest.raises(ValueError):
            split_train_valid(ds, bad)


def test_make_dataset_rejects_bad_inputs():
    with pytest.raises(ValueError, match="uint8"):
        make_dataset(np.zeros((2, 4, 4, 1)), [0, 1], num_classes=2, mean=(0,), std=(1,), name="x")
    with pytest.raises(ValueError, match="labels span"):
        make_dataset(
            np.zeros((2, 4, 4, 1), np.uint8),
            [0, 2],
            num_classes=2,
            mean=(0,),
            std=(1,),
            name="x",
        )


def test_no_network_fixture_catches_connections(no_network):
    # negative control for the fixture the offline tests rely on
    with pytest.raises(AssertionError, match="network access attempted"):
        socket.create_connection(("localhost", 9))
    with pytest.raises(AssertionError, match="network access attempted"):
        socket.socket().connect(("127.0.0.1", 9))
