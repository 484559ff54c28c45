"""The workdir contract: one writer, and a rerun that either resumes the run it finds or
says why it will not.

A run's identity is recorded in `<workdir>/config.json` once per stage it runs: every
config key that changes that stage's results, plus the backend that computed them (the
resolved kernel settings, the devices, the jax and nas_jax versions). A rerun compares
its own identity with the record before it writes anything:

  identical                 -> resume (or report "already finished");
  a pure extension, asked   -> continue (`extend=True`: more search or retraining epochs),
                               and redo every later stage, said in the log;
  anything else             -> `WorkdirError`: one line naming the differing keys and the
                               choices (another workdir, `overwrite=True`, or for a new
                               backend alone `allow_backend_change=True`).

`config.json` is rewritten only after the comparison passed (by a run that resumes the
same identity, or adds a stage), so a refused run leaves the record as it was.

One writer: `WorkdirLock` holds an exclusive `flock` on `<workdir>/.lock` for the whole
run. A second run on the workdir refuses in one line naming the holder; a lock file left
by a process that died (the kernel released its lock) is explained and taken over.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import socket
import time
from collections.abc import Iterator, Mapping, Sequence

from nas_jax.reporting import logger, write_json

CONFIG_FILE = "config.json"
LOCK_FILE = ".lock"

# Keys that never change a result: where logs go and how often.
_NOT_IDENTITY = frozenset(
    {"log_every_seconds", "xla_cache_dir", "stages", "kernels", "divergence_factor"}
)
# Flat keys that only trade memory for time (the numbers are the same).
_EXECUTION = frozenset({"select.score_chunk"})
# Per stage: the config sections (or top-level keys) its results depend on.
_COMMON = ("seed", "num_seeds", "compute_dtype", "data")
STAGE_KEYS = {
    "search": (*_COMMON, "model", "search"),
    "select": (*_COMMON, "model", "search", "select"),
    "evaluate": (*_COMMON, "evaluate", "genotype"),
}
# Paths that locate an input rather than define it: the same dataset elsewhere is fine.
_LOCATIONS = frozenset({"data.data_dir", "data.cache_dir"})
# Keys whose increase continues a stage (with `extend=True`): the stage -> its key.
EXTENSIONS = {"search": "search.epochs", "evaluate": "evaluate.epochs"}
# What each stage writes (files and folders of a workdir), removed when a stage is redone.
ARTIFACTS = {
    "search": ("checkpoints", "metrics.jsonl", "tensorboard/metrics", "genotype.json",
               "genotype_magnitude.json", "alphas.png", "alpha_evolution.png"),
    "select": ("checkpoints_select", "decisions.jsonl", "select_metrics.jsonl",
               "tensorboard/select_metrics", "genotype.json", "genotype_magnitude.json",
               "cells.dot", "cells.png"),
    "evaluate": ("checkpoints_evaluate", "evaluate_metrics.jsonl",
                 "tensorboard/evaluate_metrics", "result.json"),
}  # fmt: skip
# The analyses (`nas_jax.analysis`) read every stage: any stage redone makes them stale.
ANALYSIS_DIR = "analysis"
_OTHER_ARTIFACTS = ("damaged_checkpoints", "summary.json", "tensorboard", ANALYSIS_DIR, CONFIG_FILE)
ORDER = ("search", "select", "evaluate")
_BACKEND_KEYS = ("backend", "devices", "depthwise", "materialize", "jax", "jaxlib", "nas_jax")


class WorkdirError(RuntimeError):
    """The workdir holds another run, or is in use; the message is one line."""


# ---------------------------------------------------------------------------- identity


def _flat(tree: Mapping, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        name = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flat(v, f"{name}."))
        else:
            out[name] = list(v) if isinstance(v, tuple) else v
    return out


def config_record(config) -> dict:
    """The config as JSON data (what config.json stores at its top level)."""
    return json.loads(config.to_json_best_effort())


def stage_identity(record: Mapping, stage: str) -> dict:
    """The flat keys of a config record (`config_record`) that stage's results depend on."""
    return _relevant(_flat(record), stage)


def _relevant(flat: Mapping, stage: str) -> dict:
    """The identity keys of `stage` among flat keys (also applied to a stored identity, so
    a key this version no longer counts is ignored)."""
    keep = STAGE_KEYS[stage]
    return {
        k: v
        for k, v in flat.items()
        if k.split(".")[0] in keep
        and k.split(".")[0] not in _NOT_IDENTITY
        and k not in _LOCATIONS | _EXECUTION
    }


def backend_identity(resolved: Mapping) -> dict:
    """The parts of a run's resolved backend record (`pipeline.backend_record`) that can
    change its numbers; not the allocator, nor where a setting came from."""
    return {k: resolved[k] for k in _BACKEND_KEYS if k in resolved}


def _diff(old: Mapping, new: Mapping) -> dict:
    """key -> (old, new) for every recorded key whose value differs (a key the record lacks
    came with a later version, whose default reproduces the older behaviour)."""
    return {k: (old[k], new.get(k)) for k in sorted(old) if old[k] != new.get(k)}


def _fmt(diff: Mapping, limit: int = 6) -> str:
    items = [f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items()]
    more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
    return "; ".join(items[:limit]) + more


def read_record(workdir: str) -> dict | None:
    """config.json's content, or None when the workdir holds no run."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise WorkdirError(
            f"{path} is unreadable ({e}); it records how the workdir's run was made: restore "
            "it, or use another workdir"
        ) from None
    if not isinstance(record, dict):
        raise WorkdirError(f"{path} is not a config record (a JSON object); use another workdir")
    return record


def recorded_stages(record: Mapping) -> dict:
    """stage -> {"config": flat identity, "backend": backend identity} of every stage the
    workdir has run. Records written before per-stage identities derive them from the
    top-level config and its stages."""
    if "identity" in record:
        return dict(record["identity"])
    config = {k: v for k, v in record.items() if k != "resolved"}
    backend = backend_identity(record.get("resolved", {}))
    stages = config.get("stages", ())
    if "select" in stages:
        stages = (*stages, "search")
    return {
        st: {"config": stage_identity(config, st), "backend": backend}
        for st in ORDER
        if st in stages
    }


class Plan:
    """What a run does with its workdir: `extended` is the stage it continues (its results
    are removed, its checkpoints kept), `redo` the later stages whose results it removes,
    `overwrite` whether it removes the previous run altogether."""

    def __init__(self, identity: dict, previous: dict, *, extended: str | None = None,
                 redo: Sequence[str] = (), overwrite: bool = False,
                 notes: Sequence[str] = ()):  # fmt: skip
        self.identity, self.previous = identity, previous
        self.extended, self.redo, self.overwrite = extended, tuple(redo), overwrite
        self.notes = list(notes)


def plan(workdir: str, config, resolved: Mapping, *, extend: bool = False,
         overwrite: bool = False, allow_backend_change: bool = False) -> Plan:  # fmt: skip
    """Compares the run of `config` with what `workdir` holds; raises WorkdirError (one
    line) when they differ in a way the flags do not allow. Reads only."""
    record = config_record(config)
    backend = backend_identity(resolved)
    stages = tuple(config.stages)
    if "select" in stages and "search" not in stages:
        stages = ("search", *stages)  # select continues the search's state
    identity = {st: {"config": stage_identity(record, st), "backend": backend} for st in stages}
    old = read_record(workdir)
    if old is None:
        return Plan(identity, {})
    if overwrite:
        return Plan(identity, {}, overwrite=True,
                    notes=[f"--overwrite: the previous run in {workdir} is removed"])  # fmt: skip
    previous = recorded_stages(old)
    path = os.path.join(workdir, CONFIG_FILE)
    extended, notes, backend_diffs = None, [], {}
    for st in ORDER:
        if st not in stages or st not in previous:
            continue
        backend_diffs.update(_diff(previous[st].get("backend", {}), backend))
        diff = _diff(_relevant(previous[st]["config"], st), identity[st]["config"])
        if extended is not None or not diff:
            continue  # after an extended stage, the later ones are redone whatever differs
        key = EXTENSIONS.get(st)
        old_v, new_v = diff.get(key, (None, None))
        longer = set(diff) == {key} and isinstance(old_v, int) and isinstance(new_v, int)
        if longer and new_v > old_v and extend:
            extended = st
            notes.append(f"--extend: {key} {old_v} -> {new_v}: the {st} continues from its "
                         f"last checkpoint (its schedules now span {new_v} epochs, unlike the "
                         f"first {old_v}) and every later stage is redone")  # fmt: skip
            continue
        hint = "--extend to continue it, " if longer and new_v > old_v else ""
        raise WorkdirError(
            f"{workdir} holds a {st} run with another config ({_fmt(diff)}; recorded in "
            f"{path}); choose: {hint}another --workdir, or --overwrite to discard it"
        )
    if backend_diffs and not allow_backend_change:
        raise WorkdirError(
            f"{workdir} holds a run computed on another backend ({_fmt(backend_diffs)}; "
            f"recorded in {path}); choose: --allow_backend_change to continue it here, "
            "another --workdir, or --overwrite to discard it"
        )
    if backend_diffs:
        notes.append(f"--allow_backend_change: continuing after {_fmt(backend_diffs)}")
    redo = []
    if extended is not None:  # the stages after it read what it produces
        for st in ORDER[ORDER.index(extended) + 1 :]:
            fixed = st == "evaluate" and previous.get(st, {}).get("config", {}).get("genotype")
            if (st in previous or st in stages) and not fixed:
                redo.append(st)
    return Plan(identity, previous, extended=extended, redo=redo, notes=notes)


def describe(p: Plan, workdir: str) -> str:
    """What a run does with the workdir, in words (for `--check`)."""
    if not p.previous and not p.overwrite:
        new = "new" if not os.path.exists(os.path.join(workdir, CONFIG_FILE)) else "no stage yet"
        return f"{new}: the run starts there"
    if p.overwrite:
        return "holds another run: --overwrite removes it, the run starts over"
    done = [st for st in ORDER if st in p.previous]
    words = f"holds {', '.join(done)} of the same config: the run resumes"
    if p.extended:
        words += f"; --extend continues the {p.extended}"
    if p.redo:
        words += f" and redoes {', '.join(p.redo)}"
    return words


def apply(workdir: str, config, resolved: Mapping, p: Plan) -> None:
    """Carries out a plan (removes what is redone, logs why) and writes config.json: the
    config as given, `resolved` (what it resolved to here) and `identity` (per stage)."""
    for note in p.notes:
        logger.warning("%s", note)
    if p.overwrite:
        for st in ORDER:
            _remove(workdir, ARTIFACTS[st])
        _remove(workdir, [*_OTHER_ARTIFACTS, *member_dirs(workdir)])
    if p.extended is not None:  # its checkpoints and logs stay: it continues from them
        _remove(workdir, [a for a in ARTIFACTS[p.extended] if a.endswith(".json")])
    for st in p.redo:
        _remove(workdir, ARTIFACTS[st])
    if p.extended is not None or p.redo:
        _remove(workdir, [ANALYSIS_DIR])
    os.makedirs(workdir, exist_ok=True)
    record = config_record(config)
    record["resolved"] = dict(resolved)
    identity = {st: v for st, v in p.previous.items() if st not in p.redo}
    identity.update(p.identity)
    record["identity"] = {st: identity[st] for st in ORDER if st in identity}
    write_json(os.path.join(workdir, CONFIG_FILE), record)


def member_dirs(workdir: str) -> list[str]:
    """The member folder names (`seed_<k>`, in k order) of a sweep workdir; [] otherwise."""
    if not os.path.isdir(workdir):
        return []
    names = [n for n in os.listdir(workdir) if n.startswith("seed_") and n[5:].isdigit()]
    return sorted(names, key=lambda n: int(n[5:]))


def _remove(workdir: str, names) -> None:
    for name in names:
        path = os.path.join(workdir, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)


# ---------------------------------------------------------------------------- the lock


def _holder(path: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _describe(holder: Mapping) -> str:
    if not holder:
        return "another process"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))
    return f"pid {holder.get('pid')} on {holder.get('host')}, started {started}"


def holder(workdir: str) -> str | None:
    """Why a run could not take the workdir's lock now (another run holds it), or None;
    creates nothing."""
    path = os.path.join(workdir, LOCK_FILE)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return (f"{workdir} is in use by another run ({_describe(_holder(path))}); wait for "
                "it to finish, stop it, or use another --workdir")  # fmt: skip
    finally:
        os.close(fd)
    return None


class WorkdirLock:
    """An exclusive lock on a workdir for the lifetime of a run (`with WorkdirLock(w):`).

    `flock` on `<workdir>/.lock`: the kernel releases it when the process ends, however it
    ends, so a leftover lock file never blocks a later run; it is reported and reused.
    The file holds the holder's pid, host and start time for the refusal message, and is
    removed on a clean exit.
    """

    def __init__(self, workdir: str):
        self.workdir = workdir
        self.path = os.path.join(workdir, LOCK_FILE)
        self._fd: int | None = None

    def acquire(self) -> None:
        os.makedirs(self.workdir, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                raise WorkdirError(
                    holder(self.workdir) or f"{self.workdir} is in use by another run"
                ) from None
            # The file may have been removed (and re-created) by a holder that just exited.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        stale = _holder(self.path)
        if stale:
            logger.warning("%s was left by a run that ended without releasing it (%s); that "
                           "process no longer holds it: taking it over", self.path,
                           _describe(stale))  # fmt: skip
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(me).encode())
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.path)
        os.close(self._fd)  # closing releases the flock
        self._fd = None

    def __enter__(self) -> WorkdirLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


@contextlib.contextmanager
def locked(workdirs: Sequence[str]) -> Iterator[None]:
    """Locks every workdir (a sweep: its own and its members'), releasing all on exit."""
    with contextlib.ExitStack() as stack:
        for w in workdirs:
            stack.enter_context(WorkdirLock(w))
        yield
