"""What a run shows and leaves: progress lines, metrics.jsonl, TensorBoard scalars and
pictures."""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping

import numpy as np

logger = logging.getLogger("nas_jax")


def setup_logging(level: int = logging.INFO) -> None:
    """Our progress lines on stderr; library chatter (absl/orbax INFO) stays quiet."""
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.WARNING)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


def quiet_xla_logs() -> None:
    """Hides XLA's C++ log lines below FATAL unless TF_CPP_MIN_LOG_LEVEL is set already.

    What it hides in practice is XLA's 2-minute alarm, logged at ERROR while a compile
    runs ("Very slow compile? If you want to file a bug, run with envvar XLA_FLAGS=...",
    then "The operation took 3m15s"): the DARTS supernets take minutes to compile on a
    CPU, and the loop's own "Compiling the ... step" lines say what is happening. Errors
    that matter reach Python as exceptions; TF_CPP_MIN_LOG_LEVEL=1 (jax's default) shows
    the C++ warnings and errors again, 0 adds its info lines. Takes effect only before jax
    is imported (jax sets the default 1 then): the entry point calls it first thing.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def write_json(path: str, obj) -> None:
    """Writes JSON atomically (temporary file, then rename)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, default=_jsonable)
    os.replace(tmp, path)


class LogError(ValueError):
    """A jsonl log with a bad line before its last; the message is one line naming the
    file and the line."""


def read_jsonl(path: str) -> list[dict]:
    """The records of a jsonl log ([] when there is none). A bad last line (a run killed
    while writing it) is dropped with a warning; a bad line before it raises LogError."""
    if not os.path.exists(path):
        return []
    with open(path, "rb") as f:
        lines = [(i, ln) for i, ln in enumerate(f.read().split(b"\n"), 1) if ln.strip()]
    records = []
    for k, (number, line) in enumerate(lines):
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError(f"a JSON {type(record).__name__}, not an object")
        except ValueError as e:  # JSONDecodeError and UnicodeDecodeError included
            if k == len(lines) - 1:
                logger.warning("Dropped the torn last line of %s (line %d: not a complete "
                               "record; a run killed while writing it?)", path, number)  # fmt: skip
                break
            reason = str(e).splitlines()[0] if str(e).strip() else type(e).__name__
            raise LogError(
                f"{path}:{number} is not a JSON record ({reason}); fix or delete that line"
            ) from None
        records.append(record)
    return records


def figure_pixels(fig) -> np.ndarray:
    """A matplotlib Figure rendered (Agg, without pyplot) as an (H, W, 3) uint8 array."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _jsonable(x):
    if hasattr(x, "tolist"):
        return x.tolist()
    raise TypeError(f"Not JSON serialisable: {type(x)}")


class MetricsWriter:
    """Appends one JSON object per record to `<workdir>/<name>.jsonl` and mirrors the
    scalars to TensorBoard event files under `<workdir>/tensorboard`.

    `images(record) -> {tag: matplotlib Figure}` adds pictures of a record to TensorBoard
    (the search's alpha heat-map); a picture that fails is one warning, then none are
    drawn."""

    def __init__(self, workdir: str, name: str = "metrics", *, tensorboard: bool = True,
                 images: Callable[[Mapping], Mapping] | None = None):  # fmt: skip
        self.path = os.path.join(workdir, f"{name}.jsonl")
        self._tb = None
        self._images = images
        if tensorboard:
            from tensorboardX import SummaryWriter  # pure Python: no TensorFlow needed

            self._tb = SummaryWriter(os.path.join(workdir, "tensorboard", name))

    def truncate_after(self, key: str, value) -> None:
        """Drops records with record[key] >= value (work a resumed run will redo)."""
        if not os.path.exists(self.path):
            return
        records = read_jsonl(self.path)
        kept = [r for r in records if r.get(key, -math.inf) < value]
        tmp = f"{self.path}.tmp"
        with open(tmp, "w") as f:
            f.writelines(json.dumps(r, default=_jsonable) + "\n" for r in kept)
        os.replace(tmp, self.path)

    def write(self, step: int, record: Mapping) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(dict(record), default=_jsonable) + "\n")
        if self._tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    self._tb.add_scalar(k, v, step)
            if self._images is not None:
                self._add_images(record, step)
            self._tb.flush()

    def _add_images(self, record: Mapping, step: int) -> None:
        try:
            for tag, fig in self._images(record).items():
                self._tb.add_image(tag, figure_pixels(fig), step, dataformats="HWC")
        except Exception as e:  # noqa: BLE001 - pictures are extras; the run goes on
            logger.warning("No more TensorBoard pictures: %s: %s", type(e).__name__, e)
            self._images = None

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


class Progress:
    """Periodic one-line reports with steps/s and ETA.

    The rate is measured over the last `window` seconds of stepping and leaves out what
    the caller marks as compilation: `restart(step)` after a first (compiling) step counts
    from there, `exclude(seconds)` drops a later compile from the clock. Until a rate is
    known the line shows '?' steps/s and ETA '?'. `clock` (seconds, monotonic) is for tests.
    """

    def __init__(self, name: str, total_steps: int, start_step: int, every_seconds: float = 10.0,
                 *, window: float = 60.0, clock=None):  # fmt: skip
        self.name, self.total, self.every, self.window = name, total_steps, every_seconds, window
        self.clock = clock or (lambda: time.monotonic())  # looked up per call (tests patch it)
        self._excluded = 0.0  # seconds of compilation left out of the rate
        now = self.clock()
        self._last = now
        self._samples: deque[tuple[float, int]] = deque([(now, start_step)])

    def _now(self) -> float:
        return self.clock() - self._excluded

    def due(self) -> bool:
        """Whether `maybe_report` would print now (the loop syncs the device only then)."""
        return self.clock() - self._last >= self.every

    def restart(self, step: int) -> None:
        """The rate counts from `step`, now (after a step whose time was a compile); the
        next report is `every_seconds` away."""
        self._samples = deque([(self._now(), step)])
        self._last = self.clock()

    def exclude(self, seconds: float) -> None:
        """The last `seconds` (a compile) do not count in the rate."""
        self._excluded += max(seconds, 0.0)

    def _sample(self, step: int, force: bool) -> tuple[float, int]:
        """Records (now, step), at most one sample a second unless forced, and drops
        samples that left the window (keeping one before it as the base)."""
        now = self._now()
        if force or now - self._samples[-1][0] >= min(1.0, self.window / 10):
            if step >= self._samples[-1][1]:
                self._samples.append((now, step))
        while len(self._samples) > 2 and self._samples[1][0] <= now - self.window:
            self._samples.popleft()
        return now, step

    def rate(self, step: int) -> float | None:
        """Steps per second over the window; None while unknown."""
        now = self._now()
        t0, s0 = self._samples[0]
        if step <= s0 or now - t0 <= 0:
            return None
        return (step - s0) / (now - t0)

    def maybe_report(self, step: int, extra: Mapping[str, float] | None = None, force=False):
        self._sample(step, force)
        if not force and not self.due():
            return
        self._last = self.clock()
        rate = self.rate(step)
        eta = 0.0 if step >= self.total else (self.total - step) / rate if rate else math.inf
        fields = "".join(f" {k}={v:.4g}" for k, v in (extra or {}).items())
        logger.info(
            "%s step %d/%d%s | %s steps/s | ETA %s",
            self.name, step, self.total, fields, "?" if rate is None else f"{rate:.3g}",
            _fmt_seconds(eta),
        )  # fmt: skip


def _fmt_seconds(s: float) -> str:
    if not math.isfinite(s):
        return "?"
    s = round(s)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
