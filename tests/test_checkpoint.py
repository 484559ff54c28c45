"""Verified checkpoints and torn-log recovery (issue 15): a damaged checkpoint is skipped
for the previous one with a warning, a finished workdir whose last checkpoint is damaged
reruns to the same result, a torn last jsonl line is dropped and a bad middle line is one
error naming file:line."""

import glob
import json
import logging
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_main import ROOT, load_config

from nas_jax import checkpoint, pipeline, reporting, sweep
from nas_jax.checkpoint import Checkpointer


def tree(step):
    """A tiny state; random (incompressible) values, so that orbax stores them as bytes."""
    rng = np.random.default_rng(step)
    return {"w": jnp.asarray(rng.normal(size=(4, 4, 8, 8)), jnp.float32),
            "b": {"k": jnp.full((5,), float(step))}}  # fmt: skip


def assert_tree_equal(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def trees_equal(a, b):
    return all(
        np.array_equal(np.asarray(x), np.asarray(y))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


def saved(directory, steps=(1, 2, 3)):
    c = Checkpointer(str(directory))
    for s in steps:
        c.save(s, tree(s), {"epoch": s})
    return c


def data_file(step_dir):
    """The largest array data file of a checkpoint step (orbax/tensorstore's ocdbt)."""
    files = glob.glob(os.path.join(step_dir, "state", "**", "d", "*"), recursive=True)
    return max(files, key=os.path.getsize)


def flip_byte(step_dir):
    path = data_file(step_dir)
    b = bytearray(open(path, "rb").read())
    b[len(b) // 2] ^= 0x01
    with open(path, "wb") as f:
        f.write(b)
    return path


def warnings_of(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


# ------------------------------------------------------------------------------------
# Checkpointer on tiny pytrees
# ------------------------------------------------------------------------------------


def test_checksum_record_is_written_and_invisible_to_orbax(tmp_path):
    c = saved(tmp_path / "ck", steps=(1, 2, 3, 4))  # max_to_keep=3 deletes step 1
    assert c.all_steps() == [2, 3, 4]
    record = json.loads((tmp_path / "ck" / "4" / checkpoint.CHECKSUMS).read_text())
    assert record["files"] == checkpoint.file_digests(str(tmp_path / "ck" / "4"))
    assert any(k.startswith("state/") for k in record["files"])
    assert c.verify(4) is None
    state, meta = c.restore_latest(tree(0))
    assert_tree_equal(state, tree(4))
    assert meta == {"epoch": 4}


def test_flipped_byte_in_newest_falls_back_to_previous_with_a_warning(tmp_path, caplog):
    c = saved(tmp_path / "ck")
    flipped = flip_byte(c.step_dir(3))
    # Negative control: orbax alone loads the flipped step without complaint.
    raw, _ = c.restore(tree(0), 3)
    assert not trees_equal(raw, tree(3))

    caplog.set_level(logging.WARNING, "nas_jax")
    state, meta = c.restore_latest(tree(0))
    assert_tree_equal(state, tree(2))
    assert meta == {"epoch": 2}
    warned = " ".join(warnings_of(caplog))
    rel = os.path.relpath(flipped, c.step_dir(3))
    assert f"{c.step_dir(3)}: {rel} does not match its checksum" in warned
    assert f"checkpoint {c.step_dir(2)} instead" in warned
    moved = tmp_path / "damaged_checkpoints" / "ck_3"
    assert moved.is_dir() and c.all_steps() == [1, 2]
    # The step can be saved again, and a new Checkpointer sees the same.
    c.save(3, tree(30), {"epoch": 3})
    c.close()
    again = Checkpointer(str(tmp_path / "ck"))
    state, meta = again.restore_latest(tree(0))
    assert_tree_equal(state, tree(30))
    assert again.all_steps() == [1, 2, 3]


@pytest.mark.parametrize("damage", ["truncate", "delete", "checksum_record"])
def test_damaged_newest_falls_back(tmp_path, caplog, damage):
    c = saved(tmp_path / "ck")
    step3 = c.step_dir(3)
    if damage == "truncate":
        path = data_file(step3)
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)
        why = "does not match its checksum"
    elif damage == "delete":
        os.remove(os.path.join(step3, "state", "_METADATA"))
        why = "state/_METADATA is missing"
    else:  # a save killed before its record was written
        os.remove(os.path.join(step3, checkpoint.CHECKSUMS))
        why = "no checksum record"
    caplog.set_level(logging.WARNING, "nas_jax")
    state, meta = c.restore_latest(tree(0))
    assert_tree_equal(state, tree(2))
    assert meta == {"epoch": 2}
    assert why in " ".join(warnings_of(caplog))
    assert (tmp_path / "damaged_checkpoints" / "ck_3").is_dir()


def test_legacy_directory_without_checksums_restores_with_one_warning(tmp_path, caplog):
    c = saved(tmp_path / "ck")
    for s in (1, 2, 3):
        os.remove(os.path.join(c.step_dir(s), checkpoint.CHECKSUMS))
    caplog.set_level(logging.WARNING, "nas_jax")
    state, meta = c.restore_latest(tree(0))
    assert_tree_equal(state, tree(3))
    assert meta == {"epoch": 3}
    (warned,) = warnings_of(caplog)
    assert "no checksum records" in warned and "unverified" in warned
    assert c.all_steps() == [1, 2, 3]
    # Unverified but unreadable: orbax's error is caught and the previous step used.
    caplog.clear()
    os.remove(data_file(c.step_dir(3)))
    state, _ = c.restore_latest(tree(0))
    assert_tree_equal(state, tree(2))
    assert "orbax cannot restore it" in " ".join(warnings_of(caplog))


def test_no_usable_step_starts_over_with_a_warning(tmp_path, caplog):
    c = saved(tmp_path / "ck", steps=(1, 2))
    for s in (1, 2):
        flip_byte(c.step_dir(s))
    caplog.set_level(logging.WARNING, "nas_jax")
    assert c.restore_latest(tree(0)) is None
    assert "No usable checkpoint left" in warnings_of(caplog)[-1]
    assert c.all_steps() == []
    assert sorted(os.listdir(tmp_path / "damaged_checkpoints")) == ["ck_1", "ck_2"]
    # Negative control: an empty directory is no warning.
    caplog.clear()
    assert Checkpointer(str(tmp_path / "empty")).restore_latest(tree(0)) is None
    assert warnings_of(caplog) == []


def test_intact_step_of_another_structure_is_one_line_error_and_kept(tmp_path):
    c = saved(tmp_path / "ck", steps=(1,))
    with pytest.raises(checkpoint.CheckpointError) as e:
        c.restore_latest({"w": jnp.zeros((2, 2))})
    assert "\n" not in str(e.value)
    assert str(tmp_path / "ck" / "1") in str(e.value) and "config" in str(e.value)
    assert c.all_steps() == [1]  # intact files are not moved
    assert not (tmp_path / "damaged_checkpoints").exists()


def test_sweep_resumes_from_the_latest_step_intact_in_every_member(tmp_path, caplog):
    ckpts = [saved(tmp_path / f"seed_{k}" / "checkpoints") for k in range(2)]
    flip_byte(str(tmp_path / "seed_1" / "checkpoints" / "3"))
    caplog.set_level(logging.WARNING, "nas_jax")
    states, epoch = sweep._restore_common(ckpts, [tree(0), tree(0)])
    assert epoch == 2
    for s in states:
        assert_tree_equal(s, tree(2))
    assert [c.all_steps() for c in ckpts] == [[1, 2], [1, 2]]  # member 0's step 3 redone
    assert (tmp_path / "seed_1" / "damaged_checkpoints" / "checkpoints_3").is_dir()
    assert any("latest that every member has intact" in w for w in warnings_of(caplog))


# ------------------------------------------------------------------------------------
# jsonl logs
# ------------------------------------------------------------------------------------


def test_torn_last_line_is_dropped_and_bad_middle_line_is_one_error(tmp_path, caplog):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"epoch": 0}\n{"epoch": 1}\n{"epoch": 2, "train_lo')
    caplog.set_level(logging.WARNING, "nas_jax")
    assert reporting.read_jsonl(str(path)) == [{"epoch": 0}, {"epoch": 1}]
    assert f"torn last line of {path}" in warnings_of(caplog)[0]
    assert sweep._last_record(str(path)) == {"epoch": 1}
    w = reporting.MetricsWriter(str(tmp_path), tensorboard=False)
    w.truncate_after("epoch", 5)  # rewrites the log without the torn line
    w.write(2, {"epoch": 2})
    assert path.read_text() == '{"epoch": 0}\n{"epoch": 1}\n{"epoch": 2}\n'

    path.write_text('{"epoch": 0}\n{"epoch": 1, "x\n{"epoch": 2}\n')
    with pytest.raises(reporting.LogError) as e:
        reporting.read_jsonl(str(path))
    assert isinstance(e.value, ValueError)
    assert str(e.value).startswith(f"{path}:2 is not a JSON record") and "\n" not in str(e.value)
    with pytest.raises(reporting.LogError, match=":2 "):
        w.truncate_after("epoch", 1)
    # Negative control: a complete log reads whole, without a warning.
    caplog.clear()
    path.write_text('{"epoch": 0}\n\n{"epoch": 1}\n')
    assert reporting.read_jsonl(str(path)) == [{"epoch": 0}, {"epoch": 1}]
    assert warnings_of(caplog) == []


# ------------------------------------------------------------------------------------
# End to end on the quickstart smoke config (NB201 on digits)
# ------------------------------------------------------------------------------------


def search_config():
    config = load_config("quickstart", "smoke")  # 2 epochs of 3 steps, a checkpoint each
    config.stages = ("search",)
    return config


def final_state(workdir, config):
    from test_main import _state_leaves

    return _state_leaves(workdir, config)


@pytest.fixture(scope="module")
def full_search(tmp_path_factory):
    """An uninterrupted smoke search: its workdir and final checkpoint."""
    config = search_config()
    workdir = str(tmp_path_factory.mktemp("full"))
    pipeline.run(config, workdir)
    return workdir, final_state(workdir, config)


def test_flipped_byte_in_search_checkpoint_resumes_to_the_uninterrupted_result(
    full_search, tmp_path, caplog
):
    full, (want, want_meta) = full_search
    config = search_config()
    cut = str(tmp_path / "cut")
    shutil.copytree(full, cut)
    step_dir = os.path.join(cut, "checkpoints", "6")
    flip_byte(step_dir)
    # Negative control: the flip changes the stored weights (orbax alone loads them).
    leaves, _ = final_state(cut, config)
    assert not all(np.array_equal(a, b) for a, b in zip(leaves, want, strict=True))

    caplog.set_level(logging.INFO, "nas_jax")
    pipeline.run(config, cut)  # the same command again: redoes epoch 1 from step 3
    leaves, meta = final_state(cut, config)
    assert meta == want_meta
    for a, b in zip(leaves, want, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    warned = " ".join(warnings_of(caplog))
    assert f"Skipped damaged checkpoint {step_dir}" in warned
    assert "checkpoints/3 instead" in warned
    epochs = [r["epoch"] for r in reporting.read_jsonl(os.path.join(cut, "metrics.jsonl"))]
    assert epochs == [0, 1]
    assert (tmp_path / "cut" / "damaged_checkpoints" / "checkpoints_6").is_dir()


def test_torn_last_metrics_line_does_not_block_resume(full_search, tmp_path, caplog):
    full, (want, _) = full_search
    config = search_config()
    cut = str(tmp_path / "cut")
    shutil.copytree(full, cut)
    shutil.rmtree(os.path.join(cut, "checkpoints", "6"))  # killed while writing epoch 1:
    metrics = os.path.join(cut, "metrics.jsonl")  # its record is torn, no checkpoint
    text = open(metrics).read()
    with open(metrics, "w") as f:
        f.write(text[: len(text) - len(text.splitlines()[-1]) // 2 - 1])
    caplog.set_level(logging.WARNING, "nas_jax")
    pipeline.run(config, cut)
    assert any(f"torn last line of {metrics}" in w for w in warnings_of(caplog))
    leaves, _ = final_state(cut, config)
    for a, b in zip(leaves, want, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert [r["epoch"] for r in reporting.read_jsonl(metrics)] == [0, 1]

    # A bad line before the last is one error line naming the file and the line.
    lines = open(metrics).read().splitlines()
    with open(metrics, "w") as f:
        f.write("\n".join([lines[0][:-3], *lines[1:]]) + "\n")
    out = subprocess.run(
        [sys.executable, "-m", "nas_jax.main", "--config", "configs/quickstart.py:smoke",
         f"--workdir={cut}", f"--config.xla_cache_dir={jax.config.jax_compilation_cache_dir}"],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr[-2000:]
    errors = [ln for ln in out.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {metrics}:1 is not a JSON record")
    assert "Traceback" not in out.stderr


def test_damaged_final_selection_checkpoint_reruns_to_the_same_genotype(tmp_path, caplog):
    config = load_config("quickstart", "smoke")  # search + PT selection (6 events)
    workdir = str(tmp_path)
    pipeline.run(config, workdir)
    before = {n: (tmp_path / n).read_text() for n in ("genotype.json", "decisions.jsonl")}
    last = tmp_path / "checkpoints_select" / "5"
    assert last.is_dir()
    os.remove(data_file(str(last)))
    caplog.set_level(logging.INFO, "nas_jax")
    pipeline.run(config, workdir)  # the same command again: redoes the last event
    assert f"Skipped damaged checkpoint {last}" in " ".join(warnings_of(caplog))
    assert any("Resumed selection after event 4 (of 6)" in r.getMessage() for r in caplog.records)
    assert {n: (tmp_path / n).read_text() for n in before} == before
    assert sorted(os.listdir(tmp_path / "checkpoints_select")) == [str(i) for i in range(6)]
