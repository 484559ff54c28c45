"""The one epoch loop (nas_jax/train/loop.py) with a stage whose numbers are worked out by
hand; its NaN guard through the pipeline and the command line; the eval-mode pass."""

import json
import os
import subprocess
import sys
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_main import ROOT, load_config, read_jsonl

from nas_jax import ops, pipeline
from nas_jax.checkpoint import Checkpointer
from nas_jax.reporting import MetricsWriter, Progress
from nas_jax.train import evaluate as evaluate_lib
from nas_jax.train import loop as loop_lib


class State(NamedTuple):
    step: jax.Array
    w: jax.Array


class CountingStage:
    """w <- w + rate * shared[step % 3] every step; metrics: the new w and a constant
    accuracy of 0.5 (reported as 50 %). Epoch e multiplies the rate by e + 1."""

    name = "toy"

    def __init__(self, steps_per_epoch=3, checkpoint_every=2, epochs=4):
        self.steps_per_epoch, self.every, self.epochs = steps_per_epoch, checkpoint_every, epochs

    def step(self, state, keys, shared, inputs):
        w = state.w + keys * inputs["rate"] * shared[state.step % 3]
        return State(state.step + 1, w), {"w": w, "train_acc": jnp.float32(0.5)}

    def epoch_inputs(self, epoch):
        return {"rate": jnp.float32(epoch + 1)}

    def epoch_record(self, state, sums, epoch, seconds, member):
        return {"epoch": epoch, "member": member, **loop_lib.epoch_means(sums, 3)}

    def progress_fields(self, records):
        return {"w": records[0]["w"]}

    def checkpoint_due(self, epoch):
        return (epoch + 1) % self.every == 0 or epoch + 1 == self.epochs

    def checkpoint_meta(self, epoch, member):
        return {"epoch": epoch + 1}


SHARED = jnp.array([1.0, 2.0, 4.0])


def expected_w(epochs, scale=1.0):
    """Every w after each step, by hand: step i of epoch e adds scale * (e+1) * SHARED[i % 3]."""
    w, out, i = 0.0, [], 0
    for e in range(epochs):
        for _ in range(3):
            w += scale * (e + 1) * float(SHARED[i % 3])
            out.append(w)
            i += 1
    return out


def _loop(stage, tmp_path, seeds=0, keys=None, name="run"):
    n = max(seeds, 1)
    runs = []
    for k in range(n):
        d = str(tmp_path / f"{name}{k}")
        os.makedirs(d, exist_ok=True)
        label = f"seed {k}" if seeds else ""
        writer = MetricsWriter(d, tensorboard=False)
        runs.append(loop_lib.RunFiles(writer, Checkpointer(d + "/ckpt"), label=label))
    keys = jnp.float32(1.0) if keys is None else keys
    progress = Progress(stage.name, stage.epochs * stage.steps_per_epoch, 0, 1e9)
    loop = loop_lib.EpochLoop(stage, keys=keys, shared=SHARED, runs=runs, progress=progress,
                              seeds=seeds)  # fmt: skip
    return loop, runs


def test_records_are_epoch_means_and_checkpoints_follow_the_cadence(tmp_path):
    stage = CountingStage()
    loop, runs = _loop(stage, tmp_path)
    state = loop.run(State(jnp.int32(0), jnp.float32(0.0)), range(4))
    ws = expected_w(4)
    assert float(state.w) == ws[-1] and int(state.step) == 12
    records = read_jsonl(runs[0].metrics.path)
    assert [r["epoch"] for r in records] == [0, 1, 2, 3]
    for e, r in enumerate(records):
        assert r["w"] == pytest.approx(np.mean(ws[3 * e : 3 * e + 3]))
        assert r["train_acc"] == pytest.approx(50.0)  # *_acc in percent
    assert runs[0].checkpoints.all_steps() == [6, 12]  # after epochs 1 and 3 (the last)
    # Negative control: a stage that reads other inputs gives other numbers.
    stage.epoch_inputs = lambda e: {"rate": jnp.float32(1.0)}
    other, _ = _loop(stage, tmp_path, name="other")
    assert float(other.run(State(jnp.int32(0), jnp.float32(0.0)), range(4)).w) != ws[-1]


def test_resume_from_a_checkpoint_equals_the_uninterrupted_run(tmp_path):
    stage = CountingStage()
    full, _ = _loop(stage, tmp_path, name="full")
    fresh = State(jnp.int32(0), jnp.float32(0.0))
    want = full.run(fresh, range(4))
    cut, runs = _loop(stage, tmp_path, name="cut")
    cut.run(State(jnp.int32(0), jnp.float32(0.0)), range(2))  # checkpoint after epoch 1
    state, meta = runs[0].checkpoints.restore(fresh)
    assert meta == {"epoch": 2}
    got = cut.run(state, range(meta["epoch"], 4))
    assert float(got.w) == float(want.w) and int(got.step) == int(want.step)
    # Negative control: the same epochs from the fresh state, not the checkpoint, differ.
    other, _ = _loop(stage, tmp_path, name="fresh")
    assert float(other.run(State(jnp.int32(0), jnp.float32(0.0)), range(2, 4)).w) != float(want.w)


def test_seed_axis_runs_each_seed_as_its_single_run(tmp_path):
    stage = CountingStage()
    keys = jnp.array([1.0, 3.0])  # seed k scales its run by keys[k]
    loop, runs = _loop(stage, tmp_path, seeds=2, keys=keys, name="sweep")
    state = loop.run(State(jnp.zeros(2, jnp.int32), jnp.zeros(2)), range(4))
    np.testing.assert_allclose(state.w, [expected_w(4)[-1], 3 * expected_w(4)[-1]])
    for k, run in enumerate(runs):
        records = read_jsonl(run.metrics.path)
        assert [r["member"] for r in records] == [k] * 4
        assert records[-1]["w"] == pytest.approx(np.mean(expected_w(4, keys[k])[9:]))
        assert run.checkpoints.all_steps() == [6, 12]


class Diverging(CountingStage):
    def step(self, state, keys, shared, inputs):
        new, metrics = super().step(state, keys, shared, inputs)
        bad = jnp.where(state.step == 7, jnp.nan, 0.0)  # the 8th step's loss is NaN
        return new, {**metrics, "train_loss": bad}


@pytest.mark.parametrize("seeds", [0, 2])
def test_nan_guard_names_metric_epoch_and_step_and_writes_nothing_of_the_epoch(tmp_path, seeds):
    loop, runs = _loop(Diverging(), tmp_path, seeds=seeds,
                       keys=jnp.ones(2) if seeds else None)  # fmt: skip
    zeros = (jnp.zeros(2, jnp.int32), jnp.zeros(2)) if seeds else (jnp.int32(0), jnp.float32(0))
    with pytest.raises(loop_lib.NonFiniteError) as e:
        loop.run(State(*zeros), range(4))
    message = str(e.value)
    assert "\n" not in message
    assert "non-finite train_loss at step 8 (epoch 2, steps 7-9)" in message
    assert message.startswith("seed 0: toy diverged") == bool(seeds)
    for run in runs:  # epochs 0 and 1 were written and checkpointed, nothing of epoch 2
        assert [r["epoch"] for r in read_jsonl(run.metrics.path)] == [0, 1]
        assert run.checkpoints.all_steps() == [6]


# --------------------------------------------------------------------------------------
# The NaN guard through the pipeline and the command line
# --------------------------------------------------------------------------------------


def test_a_diverged_search_stops_with_one_line_and_writes_no_genotype(tmp_path):
    config = load_config("quickstart", "smoke")
    config.search.lr = 1e30
    with pytest.raises(loop_lib.NonFiniteError, match=r"search diverged: non-finite .* at step"):
        pipeline.run(config, str(tmp_path))
    assert not (tmp_path / "genotype.json").exists()
    if (tmp_path / "metrics.jsonl").exists():  # only finite epochs were written
        assert all(np.isfinite(r["train_loss"]) for r in read_jsonl(tmp_path / "metrics.jsonl"))

    out = subprocess.run(
        [sys.executable, "-m", "nas_jax.main", "--config", "configs/quickstart.py:smoke",
         f"--workdir={tmp_path / 'cli'}", "--config.search.lr=1e30",
         f"--config.xla_cache_dir={jax.config.jax_compilation_cache_dir}"],  # the run above's
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr[-2000:]
    errors = [ln for ln in out.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "search diverged: non-finite" in errors[0]
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "cli" / "genotype.json").exists()
    assert json.loads((tmp_path / "cli" / "config.json").read_text())["search"]["lr"] == 1e30


# --------------------------------------------------------------------------------------
# The eval-mode pass
# --------------------------------------------------------------------------------------


class BNNet(nn.Module):
    @nn.compact
    def __call__(self, x, train):
        h = nn.Dense(4)(x.reshape(x.shape[0], -1))
        return nn.Dense(3)(nn.relu(ops.batch_norm(True)(h, use_running_average=not train)))


def test_evaluator_uses_running_statistics_and_masks_the_padding():
    net = BNNet()
    x = jax.random.randint(jax.random.key(0), (10, 2, 2, 1), 0, 255).astype(jnp.uint8)
    y = jax.random.randint(jax.random.key(1), (10,), 0, 3)
    v = net.init(jax.random.key(2), jnp.zeros((1, 2, 2, 1)), train=False)
    stats = jax.tree.map(lambda a: a + 0.5, v["batch_stats"])  # not the batch's statistics
    mean, std = (0.5,), (0.25,)
    logits_fn = lambda args, xb, key: net.apply(args, xb, train=False)  # noqa: E731
    evaluate = evaluate_lib.make_evaluator(logits_fn, 4, mean, std)  # 3 batches, 2 padded
    args = {"params": v["params"], "batch_stats": stats}
    out = evaluate(args, x, y, jax.random.key(3))
    xn = (x.astype(jnp.float32) / 255.0 - 0.5) / 0.25
    logits = net.apply(args, xn, train=False)
    loss = np.mean(np.asarray(
        -jax.nn.log_softmax(logits)[jnp.arange(10), y]))  # fmt: skip
    assert out["examples"] == 10
    assert out["loss"] == pytest.approx(float(loss), rel=1e-5)
    assert out["acc"] == pytest.approx(100.0 * float(np.mean(np.argmax(logits, -1) == y)))
    # Negative control: batch statistics (train mode) give another loss.
    train_logits, _ = net.apply(args, xn, train=True, mutable=["batch_stats"])
    train_loss = np.mean(np.asarray(-jax.nn.log_softmax(train_logits)[jnp.arange(10), y]))
    assert abs(float(train_loss) - out["loss"]) > 1e-3
