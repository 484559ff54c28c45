"""Orbax checkpoints of a training state plus a small JSON record, written atomically and
verified on restore.

Each step's folder `<directory>/<step>/` gets a checksum record, `checksums.json` (the
sha256 of every file orbax wrote there, by relative path; orbax ignores the extra file).
`Checkpointer.restore_latest` tries the steps newest first: a step whose files do not
match their record, or that has no record while its siblings have one, or (written
before records existed) that orbax cannot read, is moved to
`<directory>/../damaged_checkpoints/` with a warning, and the next older step is used.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from typing import Any

import jax
import orbax.checkpoint as ocp

from nas_jax.reporting import logger

CHECKSUMS = "checksums.json"
DAMAGED = "damaged_checkpoints"


class CheckpointError(RuntimeError):
    """A checkpoint folder that cannot be used as it is; the message is one line naming
    the folder and what to do."""


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_digests(step_dir: str) -> dict[str, str]:
    """sha256 of every file under `step_dir` (the checksum record itself left out)."""
    out = {}
    for root, dirs, files in os.walk(step_dir):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            rel = os.path.relpath(path, step_dir).replace(os.sep, "/")
            if rel not in (CHECKSUMS, f"{CHECKSUMS}.tmp"):
                out[rel] = _sha256(path)
    return out


def _first_line(e: BaseException, limit: int = 200) -> str:
    text = str(e).strip().splitlines()
    line = text[0] if text else type(e).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


class Checkpointer:
    """`<directory>/<step>/{state,meta,checksums.json}`; orbax writes to a temporary folder
    and renames it when complete, so a killed run never leaves a half-written checkpoint,
    and the checksum record catches what changes a checkpoint afterwards."""

    def __init__(self, directory: str, *, max_to_keep: int | None = 3):
        self.directory = os.path.abspath(directory)
        self._max_to_keep = max_to_keep
        self._warned_unverified = False
        self._manager = self._open()

    def _open(self) -> ocp.CheckpointManager:
        options = ocp.CheckpointManagerOptions(
            max_to_keep=self._max_to_keep, create=True, enable_async_checkpointing=False
        )
        return ocp.CheckpointManager(self.directory, options=options, item_names=("state", "meta"))

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def step_dir(self, step: int) -> str:
        return os.path.join(self.directory, str(step))

    def save(self, step: int, state: Any, meta: dict) -> None:
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
        self._manager.save(step, args=args, force=True)
        self._manager.wait_until_finished()
        self._write_checksums(step)

    def _write_checksums(self, step: int) -> None:
        step_dir = self.step_dir(step)
        record = {"algorithm": "sha256", "files": file_digests(step_dir)}
        path = os.path.join(step_dir, CHECKSUMS)
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            json.dump(record, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def _has_checksums(self, step: int) -> bool:
        return os.path.isfile(os.path.join(self.step_dir(step), CHECKSUMS))

    def verify(self, step: int) -> str | None:
        """Why step's files do not match its checksum record, or None when they do."""
        step_dir = self.step_dir(step)
        try:
            with open(os.path.join(step_dir, CHECKSUMS)) as f:
                recorded = json.load(f)["files"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            return f"its checksum record is unreadable ({_first_line(e)})"
        bad = []
        for rel, digest in sorted(recorded.items()):
            path = os.path.join(step_dir, rel)
            if not os.path.isfile(path):
                bad.append(f"{rel} is missing")
            elif _sha256(path) != digest:
                bad.append(f"{rel} does not match its checksum")
        if not bad:
            return None
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        return bad[0] + more

    def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, dict]:
        """Restores into the structure (and shardings) of `abstract_state`, unverified;
        a resume uses `restore_latest` or `restore_step`."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError("No checkpoint to restore")
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
        args = ocp.args.Composite(
            state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()
        )
        restored = self._manager.restore(step, args=args)
        return restored.state, restored.meta

    def restore_step(self, abstract_state: Any, step: int) -> tuple[Any, dict] | None:
        """Step `step` verified and restored, or None when it is damaged (then it has been
        moved out of the way, with a warning).

        Raises CheckpointError when a step that matches its checksums does not restore
        into `abstract_state` (the files are as written: the run's state is another one,
        e.g. a changed config); nothing is moved then.
        """
        steps = self.all_steps()
        verified = self._has_checksums(step)
        if not verified and any(self._has_checksums(s) for s in steps if s != step):
            self._quarantine(step, "it has no checksum record (its save did not finish?)")
            return None
        if verified:
            reason = self.verify(step)
            if reason is not None:
                self._quarantine(step, reason)
                return None
        elif not self._warned_unverified:
            self._warned_unverified = True
            logger.warning(
                "Checkpoints in %s have no checksum records (written by an older nas_jax); "
                "restoring them unverified", self.directory,
            )  # fmt: skip
        try:
            return self.restore(abstract_state, step)
        except Exception as e:
            if verified:
                raise CheckpointError(
                    f"{self.step_dir(step)} matches its checksums but does not restore into "
                    f"this run's state ({_first_line(e)}); was the config changed? Use a fresh "
                    f"workdir, or delete {self.directory} to start this stage over"
                ) from e
            self._quarantine(step, f"orbax cannot restore it: {_first_line(e)}")
            return None

    def restore_latest(self, abstract_state: Any) -> tuple[Any, dict] | None:
        """The newest step that verifies and restores, as (state, meta); damaged newer
        steps are moved out of the way with a warning. None when no step is left (the
        stage starts over; a warning says so when there were damaged ones)."""
        steps = sorted(self.all_steps(), reverse=True)
        for step in steps:
            restored = self.restore_step(abstract_state, step)
            if restored is not None:
                if step != steps[0]:
                    logger.warning("Resuming from checkpoint %s instead", self.step_dir(step))
                return restored
        if steps:
            logger.warning("No usable checkpoint left in %s; starting over", self.directory)
        return None

    def _quarantine(self, step: int, reason: str) -> None:
        """Moves a damaged step out of orbax's sight (a later save of that step works)."""
        src = self.step_dir(step)
        root = os.path.join(os.path.dirname(self.directory), DAMAGED)
        os.makedirs(root, exist_ok=True)
        base = os.path.join(root, f"{os.path.basename(self.directory)}_{step}")
        dest, n = base, 1
        while os.path.exists(dest):
            n += 1
            dest = f"{base}_{n}"
        shutil.move(src, dest)
        logger.warning("Skipped damaged checkpoint %s: %s; moved it to %s", src, reason, dest)
        self._manager.close()
        self._manager = self._open()

    def delete_after(self, step: int) -> None:
        """Deletes the checkpoints of later steps (work that a resume will redo)."""
        for s in self.all_steps():
            if s > step:
                self._manager.delete(s)

    def close(self) -> None:
        self._manager.close()
