"""Image-folder conversions (issue 16): in nas_jax's cache (`data.cache_dir`), quiet, atomic,
reused while the folder is unchanged; outputs name the folder the user gave."""

import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from test_evaluate import ALL_SKIP, write_table
from test_main import ROOT, load_config

from nas_jax import config_doc, config_lib, data, evaluation, genotype, pipeline, workdir
from nas_jax.data import image_folder
from nas_jax.evaluation import retrain
from nas_jax.search import run as search_run


def make_folder(root, classes=("ant", "bee"), count=10, size=4):
    """`root/{train,test}/<class>/<i>.png`, random size x size RGB images."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name in classes:
            os.makedirs(root / split / name, exist_ok=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    return root


@pytest.fixture
def nas_jax_log(caplog):
    caplog.set_level(logging.INFO, "nas_jax")
    image_folder._announced.clear()  # a reuse is logged once per process and conversion
    return caplog


def converting(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "Converting image folder" in r.getMessage()]


# --------------------------------------------------------------------------- where


def test_the_cache_is_xdg_cache_home_else_home_cache_else_the_config(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert data.resolve_cache_dir("") == str(tmp_path / "home" / ".cache" / "nas_jax")
    assert data.resolve_cache_dir(None) == data.resolve_cache_dir("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data.resolve_cache_dir("") == str(tmp_path / "xdg" / "nas_jax")
    assert data.resolve_cache_dir("~/c") == str(tmp_path / "home" / "c")  # the config wins


# One process as the command line runs it (its logging setup, no XDG_CACHE_HOME): what it
# prints, and where it writes under a HOME of its own.
_LOAD = """
import sys
from nas_jax import reporting
from nas_jax.data import load_dataset
reporting.setup_logging()
for split in ("train", "test"):
    load_dataset("image_folder", split, data_dir=None, folder=sys.argv[1])
"""


def _load_in_a_process(folder, home):
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_CACHE_HOME", "TFDS_DATA_DIR")}
    out = subprocess.run(
        [sys.executable, "-c", _LOAD, str(folder)],
        capture_output=True, text=True, cwd=ROOT, env={**env, "HOME": str(home)}, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout + out.stderr


def test_a_conversion_goes_to_the_cache_quietly_and_is_reused(tmp_path):
    folder = make_folder(tmp_path / "pets")
    home = tmp_path / "home"
    first = _load_in_a_process(folder, home)
    cache = home / ".cache" / "nas_jax" / "image_folder"
    (converted,) = os.listdir(cache)  # one conversion, nothing left half-written beside it
    assert converted.startswith("pets_") and (cache / converted / "dataset_info.json").is_file()
    assert not (home / "tensorflow_datasets").exists()  # TFDS's default data_dir untouched
    # One line of ours, none of TFDS's (its "Downloading and preparing ... Unknown size",
    # progress bars with carriage returns and cursor escapes, absl lines).
    lines = first.strip().splitlines()
    assert len(lines) == 1, first
    assert lines[0].endswith(
        f"Converting image folder {folder} (40 images, 2 classes) into {cache / converted} "
        "(once; reused while the folder is unchanged)"
    )
    assert "Downloading and preparing" not in first and "\r" not in first
    assert "\x1b" not in first and "custom data configuration" not in first
    mtime = (cache / converted / "dataset_info.json").stat().st_mtime_ns

    again = _load_in_a_process(folder, home)  # a second run reuses it, saying so once
    assert "Converting" not in again, again
    assert again.strip().endswith(
        f"Image folder {folder}: reusing its conversion in {cache / converted}"
    )
    assert len(again.strip().splitlines()) == 1
    assert (cache / converted / "dataset_info.json").stat().st_mtime_ns == mtime


def test_a_changed_folder_is_converted_anew(tmp_path, nas_jax_log):
    folder = make_folder(tmp_path / "pets")
    cache = str(tmp_path / "cache")
    first = data.convert_image_folder(str(folder), cache)
    assert os.path.dirname(first) == os.path.join(cache, "image_folder")
    assert len(converting(nas_jax_log)) == 1
    mtime = os.stat(os.path.join(first, "dataset_info.json")).st_mtime_ns
    assert data.convert_image_folder(str(folder), cache) == first  # unchanged: reused,
    assert "reusing" not in nas_jax_log.text  # silently in the process that converted it
    image_folder._announced.clear()  # as in the next run
    assert data.convert_image_folder(str(folder), cache) == first
    assert len(converting(nas_jax_log)) == 1 and "reusing its conversion" in nas_jax_log.text
    assert os.stat(os.path.join(first, "dataset_info.json")).st_mtime_ns == mtime
    Image.new("RGB", (4, 4)).save(folder / "train" / "ant" / "new.png")
    second = data.convert_image_folder(str(folder), cache)
    assert second != first and len(converting(nas_jax_log)) == 2
    assert "(41 images, 2 classes)" in converting(nas_jax_log)[1]
    ds = data.load_dataset("image_folder", "train", data_dir=None, folder=str(folder),
                           cache_dir=cache)  # fmt: skip
    assert len(ds.labels) == 21 and ds.name == f"image_folder:{folder}"


def test_an_interrupted_conversion_leaves_nothing_that_is_read(tmp_path, monkeypatch):
    folder = make_folder(tmp_path / "pets")
    root = tmp_path / "cache" / "image_folder"
    seen = []

    def interrupted(self, split):
        seen.append(sorted(os.listdir(root)))  # while TFDS writes: only the build folder
        yield 0, {"image": self._arrays[split][0][0], "label": 0}
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(image_folder._ImageFolderBuilder, "_generate_examples", interrupted)
        with pytest.raises(KeyboardInterrupt):
            data.convert_image_folder(str(folder), str(tmp_path / "cache"))
    (building,) = seen[0]
    assert building.startswith("pets_") and ".incomplete-" in building
    assert os.listdir(root) == []  # nothing that a later run would trust
    done = data.convert_image_folder(str(folder), str(tmp_path / "cache"))  # control
    assert os.listdir(root) == [os.path.basename(done)] == [building.split(".incomplete-")[0]]


# --------------------------------------------------------------------------- the config


def test_cache_dir_is_a_data_key_that_a_rerun_may_change(tmp_path):
    config = load_config("quickstart", "smoke")
    assert config.data.cache_dir == "" and "data.cache_dir" in config_doc.MEANINGS
    assert "data.cache_dir" in config_doc.describe(config)
    record = json.loads(config.to_json_best_effort())
    record["resolved"] = pipeline.backend_record({})
    (tmp_path / "config.json").write_text(json.dumps(record))
    moved = load_config("quickstart", "smoke")
    moved.data.cache_dir = str(tmp_path / "elsewhere")
    assert workdir.plan(str(tmp_path), moved, record["resolved"]).redo == ()
    del record["data"]["cache_dir"]  # a record from before the key: the same
    (tmp_path / "config.json").write_text(json.dumps(record))
    assert workdir.plan(str(tmp_path), moved, record["resolved"]).redo == ()
    # Negative control: another folder is another dataset.
    other = load_config("quickstart", "smoke")
    other.data.folder = str(tmp_path / "other")
    with pytest.raises(workdir.WorkdirError, match=r"data.folder"):
        workdir.plan(str(tmp_path), other, record["resolved"])


def test_the_stages_pass_cache_dir_to_image_folders_only():
    config = config_lib.base_config()
    config.data.update(name="image_folder", folder="/f", cache_dir="/c")
    assert search_run.dataset_kwargs(config.data)["cache_dir"] == "/c"
    config.data.name = "cifar10"
    assert "cache_dir" not in search_run.dataset_kwargs(config.data)
    with pytest.raises(ValueError, match="cache_dir= is only used by 'image_folder'"):
        data.load_dataset("digits", "train", data_dir=None, cache_dir="/c")


# --------------------------------------------------------------------------- result.json


def test_result_json_names_the_image_folder(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, "nas_jax")
    numbers = dict(test_accuracy=50.0, test_error=50.0, epochs=1, test_examples=4,
                   best_test_accuracy=50.0, best_epoch=0, params_M=0.001)  # fmt: skip
    monkeypatch.setattr(retrain, "retrain", lambda *args: (dict(numbers), None))
    monkeypatch.chdir(tmp_path)
    config = load_config("evaluate", "dataset=image_folder,smoke")
    config.data.folder = "pets"  # relative: result.json records the absolute path
    g = genotype.get_genotype("DARTS_V2")
    result = evaluation.run_evaluate(config, str(tmp_path), g)
    label = f"image_folder:{tmp_path / 'pets'}"
    assert result["dataset"] == label
    assert json.loads((tmp_path / "result.json").read_text())["dataset"] == label
    assert f"  {label}: final-epoch test accuracy 50.00%" in caplog.text
    assert result["test_accuracy"] == 50.0  # the numbers pass through unchanged
    # Control: a dataset that is not a folder keeps its registry name.
    config.data.name = "digits"
    assert evaluation.run_evaluate(config, str(tmp_path), g)["dataset"] == "digits"


def test_a_lookup_names_the_benchmark_column_it_reports(tmp_path, caplog):
    caplog.set_level(logging.INFO, "nas_jax")
    config = load_config("evaluate", "dataset=image_folder")
    config.data.folder = str(tmp_path / "pets")
    config.evaluate.nb201_table = write_table(tmp_path / "table.csv")
    result = evaluation.run_evaluate(config, str(tmp_path), genotype.get_genotype(ALL_SKIP))
    assert result["dataset"] == "cifar10" and result["test_accuracy"] == 54.2967
    assert "data.name='image_folder' has no NAS-Bench-201 column" in caplog.text
    assert "(result: cifar10)" in caplog.text
    caplog.clear()  # control: a dataset with a column reports it, without a warning
    config.data.name = "cifar100"
    assert (
        evaluation.run_evaluate(config, str(tmp_path), genotype.get_genotype(ALL_SKIP))["dataset"]
        == "cifar100"
    )
    assert "no NAS-Bench-201 column" not in caplog.text
