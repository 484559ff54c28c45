"""Orbax checkpoints of a training state plus a small JSON record, written atomically."""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp


class Checkpointer:
    """`<directory>/<step>/{state,meta}`; orbax writes to a temporary folder and renames
    it when complete, so a killed run never leaves a half-written checkpoint."""

    def __init__(self, directory: str, *, max_to_keep: int | None = 3):
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, create=True, enable_async_checkpointing=False
        )
        self._manager = ocp.CheckpointManager(
            os.path.abspath(directory), options=options, item_names=("state", "meta")
        )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(self, step: int, state: Any, meta: dict) -> None:
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
        self._manager.save(step, args=args, force=True)
        self._manager.wait_until_finished()

    def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, dict]:
        """Restores into the structure (and shardings) of `abstract_state`."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError("No checkpoint to restore")
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
        args = ocp.args.Composite(
            state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()
        )
        restored = self._manager.restore(step, args=args)
        return restored.state, restored.meta

    def delete_after(self, step: int) -> None:
        """Deletes the checkpoints of later steps (work that a resume will redo)."""
        for s in self.all_steps():
            if s > step:
                self._manager.delete(s)

    def close(self) -> None:
        self._manager.close()
