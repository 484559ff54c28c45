"""Progress lines (nas_jax/reporting.py `Progress`, driven by nas_jax/train/loop.py): the
rate and ETA leave out compilation and follow the recent speed; '?' until a rate is known.
A fake clock stands in for time: the numbers are exact, the tests take no real seconds."""

import logging
import os
import re
import subprocess
import sys

import jax.numpy as jnp
import pytest
from test_main import ROOT
from test_train_loop import SHARED, CountingStage, State

from nas_jax import reporting
from nas_jax.reporting import MetricsWriter, Progress, logger
from nas_jax.train import loop as loop_lib

LINE = re.compile(r"step (\d+)/(\d+) .*\| (\S+) steps/s \| ETA (\S+)$")


class FakeClock:
    """Seconds that pass only when told; stands in for time.monotonic and time.time."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now

    monotonic = time = __call__

    def sleep(self, seconds):
        self.now += seconds


@pytest.fixture
def lines():
    """The nas_jax logger's messages, in order."""
    got = []
    handler = logging.Handler()
    handler.emit = lambda record: got.append(record.getMessage())
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    yield got
    logger.removeHandler(handler)
    logger.setLevel(level)


def parse(line):
    step, total, rate, eta = LINE.search(line).groups()
    return int(step), int(total), rate, eta


def test_eta_is_unknown_before_any_rate(lines):
    clock = FakeClock()
    progress = Progress("toy", 100, 0, 10.0, clock=clock)
    progress.maybe_report(0, force=True)
    assert parse(lines[-1])[2:] == ("?", "?")
    clock.sleep(5.0)
    progress.maybe_report(10, force=True)  # 10 steps in 5 s
    assert parse(lines[-1])[2:] == ("2", "0:00:45")


def test_the_rate_follows_a_speed_change(lines, monkeypatch):
    """Two minutes at 10 steps/s, then two at 2 steps/s: the reported rate is the recent
    one (a window of 60 s), not the average since the start (6 steps/s)."""
    clock = FakeClock()
    monkeypatch.setattr(reporting, "time", clock)  # the default clock
    progress = Progress("toy", 10_000, 0, 10.0)
    step = 0
    for per_step in [0.1] * 1200 + [0.5] * 240:
        clock.sleep(per_step)
        step += 1
        progress.maybe_report(step)
    last, _, rate, eta = parse(lines[-1])
    assert float(rate) == pytest.approx(2.0, rel=1e-3)
    assert eta == reporting._fmt_seconds((10_000 - last) / 2.0)
    # Negative control: at the switch the line still said 10 steps/s.
    at_switch = [parse(ln) for ln in lines if parse(ln)[0] <= 1200]
    assert float(at_switch[-1][2]) == pytest.approx(10.0, rel=0.05)


def _toy_loop(tmp_path, monkeypatch, clock, first=30.0, then=0.1, every=1.0):
    """The toy stage of test_train_loop in an EpochLoop whose step takes `first` seconds
    on its first call (a compile) and `then` seconds afterwards, on the fake clock."""
    monkeypatch.setattr(reporting, "time", clock)
    monkeypatch.setattr(loop_lib, "time", clock)
    stage = CountingStage(steps_per_epoch=3, epochs=40)
    stage.checkpoint_due = lambda epoch: False
    tmp_path.mkdir(exist_ok=True)
    run = loop_lib.RunFiles(MetricsWriter(str(tmp_path), tensorboard=False))
    progress = Progress(stage.name, stage.epochs * 3, 0, every)
    loop = loop_lib.EpochLoop(stage, keys=jnp.float32(1.0), shared=SHARED, runs=[run],
                              progress=progress)  # fmt: skip
    step, calls = loop._step, []

    def timed_step(*args):
        size = step._cache_size()
        out = step(*args)
        again = calls and step._cache_size() > size  # a compile after the first: 15 s
        clock.sleep(first if not calls else 15.0 if again else then)
        calls.append(1)
        return out

    timed_step._cache_size = step._cache_size
    loop._step = timed_step
    return loop, stage


def test_the_first_step_compile_is_timed_apart_and_not_in_the_rate(tmp_path, monkeypatch, lines):
    """A 30 s first step, then 0.1 s steps: 10 steps/s and the ETA from it. The average
    since the start (what the line said before) would be 120 / 41.9 = 2.9 steps/s."""
    clock = FakeClock()
    loop, stage = _toy_loop(tmp_path, monkeypatch, clock)
    loop.run(State(jnp.int32(0), jnp.float32(0.0)), range(20))  # 60 of 120 steps
    reports = [parse(ln) for ln in lines if LINE.search(ln)]
    step, total, rate, eta = reports[-1]
    assert (step, total) == (60, 120)
    assert float(rate) == pytest.approx(10.0, rel=1e-3)
    assert eta == "0:00:06"  # 60 steps left at 10 steps/s
    compiles = [ln for ln in lines if "Compiling the toy step" in ln]
    assert compiles == [
        "Compiling the toy step (first call of this shape)...",
        "Compiling the toy step (first call of this shape) took 30.0 s; not counted in steps/s",
    ]
    # The next run() of the same loop reuses the compiled step: no compile line.
    loop.run(State(jnp.int32(60), jnp.float32(0.0)), range(20, 22))
    assert [ln for ln in lines if "Compiling the toy step" in ln] == compiles
    # Negative control: the same steps on a loop that does not know its first step was
    # a compile (restart disabled) report the compile-inclusive rate.
    lines.clear()
    monkeypatch.setattr(Progress, "restart", lambda self, step: None)
    other, _ = _toy_loop(tmp_path / "other", monkeypatch, clock)
    other.run(State(jnp.int32(0), jnp.float32(0.0)), range(20))
    rate = float([parse(ln) for ln in lines if LINE.search(ln)][-1][2])
    assert rate < 5.0


def test_a_slow_first_epoch_record_is_reported_and_left_out(tmp_path, monkeypatch, lines):
    clock = FakeClock()
    loop, stage = _toy_loop(tmp_path, monkeypatch, clock, first=0.1)
    record = stage.epoch_record
    calls = []

    def slow_first_record(*args):
        clock.sleep(20.0 if not calls else 0.0)
        calls.append(1)
        return record(*args)

    stage.epoch_record = slow_first_record
    loop.run(State(jnp.int32(0), jnp.float32(0.0)), range(10))
    assert "The first toy epoch record took 20.0 s" in "\n".join(lines)
    assert float(parse(lines[-1])[2]) == pytest.approx(10.0, rel=1e-3)


def test_a_later_compile_is_reported_and_left_out(tmp_path, monkeypatch, lines):
    """Epoch 2 on feeds the step a float16 rate: a new input signature, so the step
    compiles again (15 s on the fake clock); the line says so and the rate stays 10."""
    clock = FakeClock()
    loop, stage = _toy_loop(tmp_path, monkeypatch, clock)
    stage.epoch_inputs = lambda e: {"rate": (jnp.float32 if e < 2 else jnp.float16)(e + 1)}
    loop.run(State(jnp.int32(0), jnp.float32(0.0)), range(10))
    again = [ln for ln in lines if "compiled again" in ln]
    assert again == [
        "The toy step compiled again at step 7 (new input shapes): 15.0 s, not counted in steps/s"
    ]
    # 10 steps/s, give or take the step whose time was the compile's.
    assert float(parse(lines[-1])[2]) == pytest.approx(10.0, rel=0.05)


@pytest.mark.parametrize("first", ["nas_jax.main", "jax"])
def test_the_entry_point_sets_the_xla_log_level_before_jax_starts(first):
    """XLA's 'Very slow compile?' alarm is a C++ ERROR line: level 3 hides it, and only
    when set before jax is imported. Negative control: jax first keeps jax's default 1."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    code = f"import {first}, nas_jax.main, jax, os; print(os.environ['TF_CPP_MIN_LOG_LEVEL'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True,
                         text=True, check=True)  # fmt: skip
    assert out.stdout.strip() == ("3" if first == "nas_jax.main" else "1")


def test_a_log_level_the_user_set_is_kept(monkeypatch):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    reporting.quiet_xla_logs()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL")
    reporting.quiet_xla_logs()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3"
