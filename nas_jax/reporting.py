"""What a run shows and leaves: progress lines, metrics.jsonl, TensorBoard scalars."""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from collections.abc import Mapping

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


def write_json(path: str, obj) -> None:
    """Writes JSON atomically (temporary file, then rename)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, default=_jsonable)
    os.replace(tmp, path)


def _jsonable(x):
    if hasattr(x, "tolist"):
        return x.tolist()
    raise TypeError(f"Not JSON serialisable: {type(x)}")


class MetricsWriter:
    """Appends one JSON object per record to `<workdir>/<name>.jsonl` and mirrors the
    scalars to TensorBoard event files under `<workdir>/tensorboard`."""

    def __init__(self, workdir: str, name: str = "metrics", *, tensorboard: bool = True):
        self.path = os.path.join(workdir, f"{name}.jsonl")
        self._tb = None
        if tensorboard:
            from tensorboardX import SummaryWriter  # pure Python: no TensorFlow needed

            self._tb = SummaryWriter(os.path.join(workdir, "tensorboard", name))

    def truncate_after(self, key: str, value) -> None:
        """Drops records with record[key] >= value (work a resumed run will redo)."""
        if not os.path.exists(self.path):
            return
        with open(self.path) as f:
            records = [json.loads(line) for line in f if line.strip()]
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
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


class Progress:
    """Periodic one-line reports with steps/s and ETA."""

    def __init__(self, name: str, total_steps: int, start_step: int, every_seconds: float = 10.0):
        self.name, self.total, self.every = name, total_steps, every_seconds
        self._t0 = self._last = time.time()
        self._s0 = start_step

    def maybe_report(self, step: int, extra: Mapping[str, float] | None = None, force=False):
        now = time.time()
        if not force and now - self._last < self.every:
            return
        self._last = now
        done = step - self._s0
        rate = done / max(now - self._t0, 1e-9)
        eta = (self.total - step) / rate if rate > 0 else float("inf")
        fields = " ".join(f"{k}={v:.4g}" for k, v in (extra or {}).items())
        logger.info(
            "%s step %d/%d %s | %.2f steps/s | ETA %s",
            self.name, step, self.total, fields, rate, _fmt_seconds(eta),
        )  # fmt: skip


def _fmt_seconds(s: float) -> str:
    if not math.isfinite(s):
        return "?"
    s = int(s)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
