"""The one epoch loop of the library: search, seed sweeps, PT tuning and retraining.

A stage supplies what differs (a `Stage`: its pure step, per-epoch inputs, what it logs
and checkpoints); the loop does what they share:

  epochs of jitted steps (state donated) over data already in device memory, the step
  metrics summed on device, progress lines with steps/s and ETA (the first step, which
  compiles, and the first epoch record, whose evaluation compiles, are timed apart and
  left out of the rate; the loop waits for the device only then and once per progress
  line, so that a line counts steps done, not steps queued), a NaN guard (a
  non-finite metric stops the run with the epoch and the first bad step, before anything
  of that epoch is written), one metrics.jsonl + TensorBoard record per epoch, and orbax
  checkpoints on the stage's cadence, so a rerun resumes exactly.

With `seeds=K` the state and the keys carry a leading seed axis and one `jit(vmap(step))`
advances all K runs (shared data and epoch inputs); records, the NaN guard and
checkpoints are per seed. Resuming (which checkpoint, which epoch) is the stage's call:
the loop runs the epochs it is given.

Step convention: `step(state, keys, shared, inputs) -> (state, metrics)`, where `keys`
are the run's fixed keys (per seed), `shared` the data every seed reads and `inputs` the
epoch's scalars (`Stage.epoch_inputs`). Randomness comes from `keys` folded with the
state's step counter, so an epoch computes the same whether or not the run was resumed.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from nas_jax.checkpoint import Checkpointer
from nas_jax.reporting import MetricsWriter, Progress, logger


class NonFiniteError(FloatingPointError):
    """A run diverged: a step metric went NaN or infinite (the message, one line, names the
    metric, the epoch and the first step), or the stage's divergence metric grew past its
    factor; the message says what was kept."""


class Stage(Protocol):
    """What a stage supplies to `EpochLoop`."""

    name: str  # in progress lines and errors: 'search', 'select', 'retrain'
    steps_per_epoch: int

    def step(self, state, keys, shared, inputs) -> tuple[Any, Mapping[str, jax.Array]]:
        """The pure step (jitted, and vmapped over seeds, by the loop)."""

    def epoch_inputs(self, epoch: int) -> dict:
        """Scalars the step reads in this epoch (e.g. the SDARTS radius)."""

    def epoch_record(self, state, sums, epoch: int, seconds: float, member: int) -> dict:
        """One run's metrics.jsonl record of a finished epoch; `sums` are its step metrics
        summed over the epoch (host scalars), `seconds` the epoch's step time."""

    def progress_fields(self, records: Sequence[dict]) -> dict:
        """The numbers of the epoch's progress line, from every run's record."""

    def checkpoint_due(self, epoch: int) -> bool:
        """Whether to checkpoint after `epoch` (finished)."""

    def checkpoint_meta(self, epoch: int, member: int) -> dict:
        """The JSON saved beside the state after `epoch`."""

    # Optional: `divergence = (metric, factor)` stops a run whose epoch record's `metric`
    # exceeds `factor` times its first epoch's (factor 0 = off).


@dataclasses.dataclass
class RunFiles:
    """Where one run (one seed) writes: its metrics and, if it checkpoints, its orbax
    directory. `label` prefixes its errors (e.g. 'seed 3 (W/seed_1)')."""

    metrics: MetricsWriter
    checkpoints: Checkpointer | None = None
    label: str = ""


def _first_record(path: str) -> dict | None:
    """The first record of a metrics.jsonl (None when there is none yet)."""
    try:
        with open(path) as f:
            line = f.readline()
        return json.loads(line) if line.endswith("\n") else None
    except (OSError, ValueError):
        return None


def epoch_means(sums: Mapping, steps: int) -> dict[str, float]:
    """Per-step means of summed metrics; accuracies (`*_acc`) in percent."""
    return {k: float(v) / steps * (100.0 if k.endswith("_acc") else 1.0) for k, v in sums.items()}


@jax.jit
def _start(metrics, step):
    bad = jax.tree.map(lambda v: jnp.where(jnp.isfinite(v), -1, step), metrics)
    return metrics, bad


@jax.jit
def _accumulate(acc, metrics, step):
    sums, bad = acc
    sums = jax.tree.map(jnp.add, sums, metrics)
    first = lambda b, v: jnp.where((b < 0) & ~jnp.isfinite(v), step, b)
    return sums, jax.tree.map(first, bad, metrics)


@jax.jit
def stack(trees: list):
    """Trees of equal structure -> one tree with a leading axis of len(trees)."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


@jax.jit
def unstack(tree) -> list:
    """A stacked tree -> the list of its members' trees (one jitted call: slicing leaf by
    leaf eagerly costs a dispatch, and on first use a compilation, per leaf)."""
    k = jax.tree.leaves(tree)[0].shape[0]
    return [jax.tree.map(lambda x: x[i], tree) for i in range(k)]


def _cache_size(jitted) -> int:
    """How many compiled versions a jitted function holds (-1 when jax does not say:
    `_cache_size` is not public API)."""
    size = getattr(jitted, "_cache_size", None)
    return size() if callable(size) else -1


class EpochLoop:
    """Runs a stage's epochs; see the module docstring.

    `runs` has one entry per seed (one without a seed axis). `progress_offset` is the
    state's step counter where the stage's own count starts (PT tuning continues the
    search's counter), so progress counts the stage's steps.
    """

    def __init__(self, stage: Stage, *, keys, shared, runs: Sequence[RunFiles],
                 progress: Progress, seeds: int = 0, progress_offset: int = 0):  # fmt: skip
        if seeds and len(runs) != seeds:
            raise ValueError(f"{len(runs)} run folders for {seeds} seeds")
        self.stage, self.keys, self.shared, self.runs = stage, keys, shared, list(runs)
        self.progress, self.seeds, self.offset = progress, seeds, progress_offset
        self._first: dict[int, float | None] = {}  # run -> its first epoch's divergence metric
        step = stage.step if not seeds else jax.vmap(stage.step, in_axes=(0, 0, None, None))
        self._step = jax.jit(step, donate_argnums=0)
        self._warm = self._recorded = False  # the step compiled; an epoch recorded

    def run(self, state, epochs: Iterable[int]):
        """Runs `epochs` (consecutive epoch indices) from `state`; returns the final state."""
        stage, spe = self.stage, self.stage.steps_per_epoch
        step = int(np.asarray(state.step).reshape(-1)[0])
        for epoch in epochs:
            t0 = time.time()
            inputs = stage.epoch_inputs(epoch)
            acc = None
            for _ in range(spe):
                state, metrics = self._advance(state, inputs, step)
                step += 1
                acc = _start(metrics, step) if acc is None else _accumulate(acc, metrics, step)
                if self.progress.due():  # once per line, not per step: count steps done
                    jax.block_until_ready(metrics)
                self.progress.maybe_report(step - self.offset, {"epoch": epoch})
            seconds = time.time() - t0
            states = unstack(state) if self.seeds else [state]
            sums, bad = (self._per_run(tree) for tree in jax.device_get(acc))
            for run, first_bad in zip(self.runs, bad, strict=True):
                self._guard(run, first_bad, epoch, step - spe + 1)
            t_record = self.progress.clock()
            records = [
                stage.epoch_record(s, sums[k], epoch, seconds, k) for k, s in enumerate(states)
            ]
            if not self._recorded:
                self._first_record_timed(self.progress.clock() - t_record)
            for run, record in zip(self.runs, records, strict=True):
                self._guard_growth(run, record, epoch)
            for run, record in zip(self.runs, records, strict=True):
                run.metrics.write(step, record)
            fields = {"epoch": epoch, **stage.progress_fields(records)}
            self.progress.maybe_report(step - self.offset, fields, force=True)
            if stage.checkpoint_due(epoch):
                for k, (run, s) in enumerate(zip(self.runs, states, strict=True)):
                    if run.checkpoints is not None:
                        run.checkpoints.save(step, s, stage.checkpoint_meta(epoch, k))
        return state

    def _advance(self, state, inputs, step: int):
        """One step. The loop's first call compiles: it is announced, waited for and timed
        apart, and the rate counts from after it. A later call that compiles again (new
        input shapes, seen in the jit cache) has its dispatch time, the compile, left out."""
        name, clock = self.stage.name, self.progress.clock
        if not self._warm:
            logger.info("Compiling the %s step (first call of this shape)...", name)
            t0 = clock()
            out = jax.block_until_ready(self._step(state, self.keys, self.shared, inputs))
            logger.info("Compiling the %s step (first call of this shape) took %.1f s; "
                        "not counted in steps/s", name, clock() - t0)  # fmt: skip
            self._warm = True
            self.progress.restart(step + 1 - self.offset)
            return out
        size = _cache_size(self._step)
        t0 = clock()
        out = self._step(state, self.keys, self.shared, inputs)
        if _cache_size(self._step) > size:
            seconds = clock() - t0
            logger.info("The %s step compiled again at step %d (new input shapes): %.1f s, "
                        "not counted in steps/s", name, step + 1, seconds)  # fmt: skip
            self.progress.exclude(seconds)
        return out

    def _first_record_timed(self, seconds: float) -> None:
        """The loop's first epoch record compiles the stage's evaluation, if it has one:
        its time is left out of the rate, and said when it is long."""
        self._recorded = True
        self.progress.exclude(seconds)
        if seconds >= 1.0:
            logger.info("The first %s epoch record took %.1f s (its evaluation compiles on "
                        "first use); not counted in steps/s", self.stage.name, seconds)  # fmt: skip

    def _guard_growth(self, run: RunFiles, record: Mapping, epoch: int) -> None:
        """Stops a run whose `stage.divergence` metric (name, factor) exceeds factor times
        its value in the run's first epoch (read back from its metrics on a resume)."""
        metric, factor = getattr(self.stage, "divergence", (None, 0.0))
        if not metric or not factor or metric not in record:
            return
        if id(run) not in self._first:
            first = _first_record(run.metrics.path)
            self._first[id(run)] = (first or record).get(metric)
        start, value = self._first[id(run)], record[metric]
        if start is None or not value > factor * max(start, 1e-3):
            return
        raise self._diverged(
            run,
            epoch,
            f"{metric}={value:.4g} in epoch {epoch} is over "
            f"{factor:g} x its first epoch's {start:.4g} (divergence_factor)",
        )

    def _per_run(self, tree) -> list:
        """Host values of every run (the seed axis split on the host)."""
        if not self.seeds:
            return [tree]
        return [jax.tree.map(lambda x, k=k: x[k], tree) for k in range(self.seeds)]

    def _guard(self, run: RunFiles, first_bad: Mapping, epoch: int, first_step: int) -> None:
        bad = {k: int(v) for k, v in first_bad.items() if int(v) >= 0}
        if not bad:
            return
        at = min(bad.values())
        names = ", ".join(sorted(k for k, v in bad.items() if v == at))
        last = first_step + self.stage.steps_per_epoch - 1
        raise self._diverged(
            run,
            epoch,
            f"non-finite {names} at step {at} (epoch {epoch}, steps {first_step}-{last})",
        )

    def _diverged(self, run: RunFiles, epoch: int, what: str) -> NonFiniteError:
        where = f"{run.label}: " if run.label else ""
        kept = "the last checkpoint" if run.checkpoints is not None else "earlier results"
        return NonFiniteError(
            f"{where}{self.stage.name} diverged: {what}; nothing of epoch "
            f"{epoch} was written, {kept} is kept"
        )
