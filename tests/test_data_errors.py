"""Errors caused by a user's data are one line naming the file or folder (issue 15):
image folders, TFDS data_dir, the NAS-Bench-201 table and the ImageNet16 pickles.
Every bad input has a well-formed control that works."""

import logging
import os
import pickle

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from nas_jax import pipeline
from nas_jax.data import DataError, DatasetNotPreparedError, convert_image_folder, load_dataset
from nas_jax.evaluation import BenchmarkError, load_table, lookup_nb201
from nas_jax.genotype import get_genotype

ALL_SKIP = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"  # noqa: E501
CONV_CELL = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"  # noqa: E501
POOL_CELL = "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|"  # noqa: E501


def one_line(error: BaseException) -> str:
    message = str(error)
    assert "\n" not in message, message
    return message


# --------------------------------------------------------------------------- image folders


def make_folder(root, counts, ext="png", split="train"):
    """`root/<split>/<class>/<i>.<ext>`, `counts[class]` random 8x8 RGB images each."""
    rng = np.random.default_rng(0)
    for name, count in counts.items():
        os.makedirs(root / split / name, exist_ok=True)
        for i in range(count):
            pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / split / name / f"{i}.{ext}", quality=95)
    return root


def test_truncated_jpeg_names_the_file(tmp_path):
    root = make_folder(tmp_path / "pets", {"ant": 3, "bee": 3}, ext="jpg")
    ds = load_dataset(
        "image_folder", "train", data_dir=None, folder=str(root), cache_dir=str(tmp_path / "d")
    )
    assert len(ds.labels) == 6  # control: the intact folder converts
    bad = root / "train" / "bee" / "1.jpg"
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    with pytest.raises(DataError) as info:
        convert_image_folder(str(root), str(tmp_path / "d"))
    message = one_line(info.value)
    assert str(bad) in message and "re-export or remove" in message


def test_undecodable_image_names_the_file(tmp_path):
    root = make_folder(tmp_path / "pets", {"ant": 2, "bee": 2})
    bad = root / "train" / "ant" / "notes.png"
    bad.write_text("not an image")
    with pytest.raises(DataError) as info:
        convert_image_folder(str(root), str(tmp_path / "d"))
    assert str(bad) in one_line(info.value)
    bad.unlink()
    convert_image_folder(str(root), str(tmp_path / "d"))  # control


def test_one_class_folder_is_an_error(tmp_path):
    root = make_folder(tmp_path / "cats", {"cat": 4})
    with pytest.raises(DataError) as info:
        load_dataset(
            "image_folder", "train", data_dir=None, folder=str(root), cache_dir=str(tmp_path / "d")
        )
    message = one_line(info.value)
    assert str(root / "train") in message and "'cat'" in message and "2 classes" in message
    make_folder(root, {"dog": 4})  # control: two classes
    ds = load_dataset(
        "image_folder", "train", data_dir=None, folder=str(root), cache_dir=str(tmp_path / "d")
    )
    assert ds.num_classes == 2 and sorted(np.bincount(ds.labels)) == [4, 4]


@pytest.mark.parametrize("split", ["train", "test"])
def test_empty_class_folder_is_an_error(tmp_path, split):
    root = make_folder(tmp_path / "pets", {"ant": 2, "bee": 2})
    make_folder(root, {"ant": 1, "bee": 1}, split="test")
    empty = root / split / "bee"
    for file in empty.iterdir():
        file.unlink()
    (empty / "readme.txt").write_text("no images here")
    with pytest.raises(DataError) as info:
        convert_image_folder(str(root), str(tmp_path / "d"))
    assert str(empty) in one_line(info.value)


def test_folder_without_images_is_an_error(tmp_path):
    root = tmp_path / "none"
    (root / "train").mkdir(parents=True)
    with pytest.raises(DataError) as info:
        convert_image_folder(str(root), str(tmp_path / "d"))
    assert str(root / "train") in one_line(info.value)


def test_few_images_per_class_warns(tmp_path, caplog):
    root = make_folder(tmp_path / "pets", {"ant": 1, "bee": 12})
    with caplog.at_level(logging.WARNING, logger="nas_jax"):
        convert_image_folder(str(root), str(tmp_path / "d"))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("'ant' (1)" in w and str(root / "train") in w for w in warnings), warnings
    assert not any("'bee'" in w for w in warnings)


# --------------------------------------------------------------------------- TFDS data_dir


def _prepare_tiny_cifar10(data_dir):
    """TFDS's own cifar10 builder writes 4 examples as array_record (no download)."""
    from tensorflow_datasets.image_classification import cifar

    class TinyCifar10(cifar.Cifar10, skip_registration=True):
        name = "cifar10"

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(4), "test": self._generate_examples(2)}

        def _generate_examples(self, n):
            for i in range(n):
                pixels = np.full((32, 32, 3), 10 * i, np.uint8)
                yield i, {"id": f"{i}", "image": Image.fromarray(pixels), "label": i}

    builder = TinyCifar10(data_dir=str(data_dir), file_format="array_record")
    builder.download_and_prepare(download_dir=str(data_dir / "downloads"))
    return builder.data_dir


def _layout(tmp_path, case):
    """A data_dir where cifar10 is missing or unprepared in the way `case` names."""
    d = tmp_path / "tfds"
    if case == "nonexistent":
        return str(d)
    d.mkdir()
    if case == "other_dataset":
        (d / "mnist" / "3.0.1").mkdir(parents=True)
        (d / "mnist" / "3.0.1" / "dataset_info.json").write_text("{}")
    elif case == "no_version":
        (d / "cifar10").mkdir()
    elif case == "empty_version":
        (d / "cifar10" / "3.0.2").mkdir(parents=True)
    elif case == "info_without_splits":  # dataset_info.json written, nothing generated
        info = tfds.builder("cifar10", data_dir=str(tmp_path / "unused")).info
        info.as_proto.file_format = "array_record"
        (d / "cifar10" / "3.0.2").mkdir(parents=True)
        info.write_to_directory(d / "cifar10" / "3.0.2")
    elif case == "no_array_record_files":
        for file in os.listdir(_prepare_tiny_cifar10(d)):
            if ".array_record" in file:
                os.remove(os.path.join(d, "cifar10", "3.0.2", file))
    return str(d)


@pytest.mark.parametrize(
    "case",
    ["nonexistent", "empty", "other_dataset", "no_version", "empty_version",
     "info_without_splits", "no_array_record_files"],
)  # fmt: skip
def test_unprepared_tfds_data_dir_says_how_to_prepare(tmp_path, no_network, case):
    data_dir = _layout(tmp_path, case)
    with pytest.raises(DatasetNotPreparedError) as info:
        load_dataset("cifar10", "train", data_dir=data_dir)
    message = one_line(info.value)
    assert data_dir in message and "tfds build cifar10" in message and "array_record" in message


def test_empty_data_dir_string_is_not_prepared(tmp_path, no_network, monkeypatch):
    monkeypatch.chdir(tmp_path)  # tfds would read "" as the working directory
    with pytest.raises(DatasetNotPreparedError) as info:
        load_dataset("cifar10", "train", data_dir="")
    assert "tfds build cifar10" in one_line(info.value)


def test_tiny_prepared_cifar10_loads(tmp_path, no_network):
    """The control of the unprepared cases: the same layout, prepared, loads."""
    _prepare_tiny_cifar10(tmp_path)
    ds = load_dataset("cifar10", "train", data_dir=str(tmp_path))
    assert ds.images.shape == (4, 32, 32, 3) and sorted(ds.labels) == [0, 1, 2, 3]


# --------------------------------------------------------------------------- NB201 table

GOOD_TABLE = (
    "arch,cifar10,cifar100,ImageNet16-120\n"
    f"{ALL_SKIP},54.2967,15.6067,16.3222\n"
    f"{CONV_CELL},91.25,70.5,40.125\n"
    f"{POOL_CELL},11.0,22.0,33.0\n"
)


def write_table(tmp_path, text, name="table.csv"):
    path = tmp_path / name
    path.write_bytes(text.encode())
    return str(path)


def test_good_table_loads_and_a_lookup_from_a_partial_table_warns(tmp_path, caplog):
    path = write_table(tmp_path, GOOD_TABLE)
    rows = load_table(path)
    assert rows[ALL_SKIP] == (54.2967, 15.6067, 16.3222) and len(rows) == 3
    # Windows line endings are the same table.
    crlf = write_table(tmp_path, GOOD_TABLE.replace("\n", "\r\n"), "crlf.csv")
    assert load_table(crlf) == rows
    with caplog.at_level(logging.WARNING, logger="nas_jax"):
        found = lookup_nb201(get_genotype(CONV_CELL), path)
    assert found.test_accuracy["cifar100"] == 70.5
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(path in w and "3 rows" in w and "15625" in w for w in warnings), warnings
    with pytest.raises(BenchmarkError, match="it holds 3 of the 15625 cells"):
        lookup_nb201(get_genotype(CONV_CELL.replace("nor_conv_1x1~2", "none~2")), path)


def _lines(text):
    return text.splitlines(keepends=True)


BAD_TABLES = {
    # The file was cut off in its last number: 16.3222 -> 16.3.
    "cut_off": (GOOD_TABLE[:-3], 4, "does not end with a newline"),
    "duplicate": (GOOD_TABLE + f"{ALL_SKIP},1.0,2.0,3.0\n", 5, "line 2"),
    "short_row": (GOOD_TABLE.replace(",70.5,40.125", ",70.5"), 3, "3 cells"),
    "long_row": (GOOD_TABLE.replace(",70.5,", ",70.5,1.0,"), 3, "5 cells"),
    "not_a_number": (GOOD_TABLE.replace("70.5", "n/a"), 3, "'n/a'"),
    "nan": (GOOD_TABLE.replace("70.5", "nan"), 3, "'nan'"),
    "out_of_range": (GOOD_TABLE.replace("91.25", "9125"), 3, "[0, 100]"),
    "bad_arch": (GOOD_TABLE.replace("nor_conv_1x1~2", "conv_9x9~2"), 3, "conv_9x9"),
    "bad_header": (GOOD_TABLE.replace("cifar100", "c100", 1), 1, "header"),
    "empty_line": ("".join(_lines(GOOD_TABLE)[:2] + ["\n"] + _lines(GOOD_TABLE)[2:]), 3, "empty"),
    "empty_file": ("", 1, "empty"),
}


@pytest.mark.parametrize("case", sorted(BAD_TABLES))
def test_malformed_table_is_one_line_naming_file_and_line(tmp_path, case):
    text, line, what = BAD_TABLES[case]
    path = write_table(tmp_path, text)
    with pytest.raises(BenchmarkError) as info:
        load_table(path)
    message = one_line(info.value)
    assert f"{path}:{line}:" in message and what in message, message


def test_malformed_table_fails_before_the_workdir_is_written(tmp_path):
    from test_main import load_config

    config = load_config("evaluate")
    config.genotype = ALL_SKIP
    config.evaluate.nb201_table = write_table(tmp_path, BAD_TABLES["cut_off"][0])
    with pytest.raises(BenchmarkError, match="does not end with a newline"):
        pipeline.run(config, str(tmp_path / "w"))
    assert not (tmp_path / "w").exists()
    config.evaluate.nb201_table = write_table(tmp_path, GOOD_TABLE, "good.csv")  # control
    result = pipeline.run(config, str(tmp_path / "w"))
    assert result["nb201_test_accuracy"]["ImageNet16-120"] == 16.3222


# --------------------------------------------------------------------------- ImageNet16-120


def test_imagenet16_file_that_does_not_unpickle_names_it_and_the_trust_caveat(tmp_path):
    folder = tmp_path / "imagenet16"
    folder.mkdir()
    with open(folder / "val_data", "wb") as f:
        pickle.dump({"data": np.zeros((2, 768), np.uint8), "labels": [1, 120]}, f)
    ds = load_dataset("imagenet16_120", "test", data_dir=str(tmp_path))  # control
    assert sorted(ds.labels) == [0, 119]
    (folder / "val_data").write_bytes(b"\x80\x04 this is not a pickle")
    with pytest.raises(DataError) as info:
        load_dataset("imagenet16_120", "test", data_dir=str(tmp_path))
    message = one_line(info.value)
    assert str(folder / "val_data") in message
    assert "pickle" in message and "trusted source" in message


def test_imagenet16_loader_documents_the_pickle_caveat():
    from nas_jax.data import sources

    doc = sources.load_imagenet16_120.__doc__
    assert "pickle" in doc and "trusted source" in doc
