"""Batched seed sweeps: `config.num_seeds = K` runs K independent searches in one program.

Member k (k = 0..K-1) is the run of `--config.seed=<seed + k>`: its own initialisation,
batch order, augmentation, SDARTS noise and (in selection) edge order. It writes to
`<workdir>/seed_<k>/` exactly what that single run writes to its workdir (config.json
with that seed and num_seeds=1, metrics.jsonl, tensorboard/, checkpoints/, genotype.json,
...), so every per-run tool reads it and the single-run command on that folder resumes it.
`<workdir>/summary.json` gathers every member's genotype and final numbers with their mean
and standard deviation over the seeds.

Batched: the search. The K SearchStates are stacked on a leading seed axis and the search
stage runs in `train.loop.EpochLoop` with `seeds=K`: one jitted `jax.vmap` of the train
step advances all of them; the data stay shared (unbatched). The per-epoch evaluation,
metrics, NaN guard and checkpoints are per seed, on each seed's slice of the stacked state
(the eval function compiles once for all).
Not batched: selection and evaluation run member after member (`pipeline.run`). Each
member's PT schedule makes other decisions (other edge order, other choices), so the
control flow differs per seed; the members share shapes, so XLA's compilation cache
serves the later members' programs.

Numerics: a vmapped step is another XLA program than the single step (per-seed kernels make
batched convolutions), so member k matches the single run of seed + k to float rounding,
not bit for bit: after the NB201 smoke search the weights differ by at most 3e-7 and the
genotypes, PT decisions and lookups are equal (tests/test_sweep.py).

`stages=('evaluate',)` with num_seeds=K evaluates each member's genotype.json or, with
config.genotype set, retrains that one genotype with K seeds (seed after seed).

Resume: the sweep restarts from the latest search checkpoint that every member has intact
(a kill between two members' saves leaves them one checkpoint apart; a member's damaged
checkpoint is moved to its damaged_checkpoints/) and deletes later ones.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, NamedTuple

import numpy as np

from nas_jax import config_lib
from nas_jax.checkpoint import Checkpointer
from nas_jax.reporting import MetricsWriter, Progress, logger, read_jsonl, write_json
from nas_jax.search import run as search_run
from nas_jax.train import loop as loop_lib

# Per-run bookkeeping that is the same for every seed or is not a result.
_NOT_RESULTS = frozenset({"epoch", "step", "seconds", "lr", "epsilon", "wall_seconds",
                          "train_seconds", "epochs", "steps", "test_examples",
                          "test_split_size"})  # fmt: skip


class Member(NamedTuple):
    """One seed of a sweep: its index, seed, single-run config and workdir."""

    index: int
    seed: int
    config: Any
    workdir: str


def validate_num_seeds(value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise config_lib.ConfigError(f"num_seeds={value!r} must be an integer >= 1")


def members(config, workdir: str) -> list[Member]:
    """The sweep's members: seed + k in `<workdir>/seed_<k>/` (config.num_seeds of them)."""
    out = []
    for k in range(config.num_seeds):
        cfg = config.copy_and_resolve_references()
        cfg.seed, cfg.num_seeds = config.seed + k, 1
        out.append(Member(k, cfg.seed, cfg, os.path.join(workdir, f"seed_{k}")))
    return out


def _restore_common(ckpts: list[Checkpointer], fresh: list) -> tuple[list, int]:
    """Each member's state at the latest search checkpoint that all members have and that
    verifies in all of them (a damaged one is moved away and the next common step tried)."""
    newest = max((s for c in ckpts for s in c.all_steps()), default=None)
    while common := set.intersection(*(set(c.all_steps()) for c in ckpts)):
        step = max(common)
        restored = [c.restore_step(f, step) for c, f in zip(ckpts, fresh, strict=True)]
        if any(r is None for r in restored):
            continue  # a member's step was damaged and moved away: try an earlier one
        for c in ckpts:
            c.delete_after(step)  # the resume redoes that work and saves it again
        epoch = restored[0][1]["epoch"]
        if step != newest:
            logger.warning("Resuming the sweep's search from step %d, the latest that every "
                           "member has intact", step)  # fmt: skip
        logger.info("Resumed the sweep's search from step %d (epoch %d)", step, epoch)
        return [state for state, _ in restored], epoch
    if newest is not None:  # killed during the first save, or every common step damaged
        logger.warning("Sweep checkpoints share no usable step; restarting the search")
    for c in ckpts:
        c.delete_after(-1)
    return fresh, 0


def run_search_sweep(config, sweep: list[Member], search_data: search_run.SearchData | None = None):
    """The search stage of all members at once (or resumed, or skipped when finished).

    Returns (member states, setup, search data): the states unstacked, in member order.
    """
    search_data = search_data or search_run.load_search_data(config.data)
    setup = search_run.make_setup(config, search_data)  # the seed does not enter the setup
    member_keys = [search_run.RunKeys.from_seed(m.seed) for m in sweep]
    fresh = [search_run.create_state(setup, k, search_data) for k in member_keys]
    ckpts = [Checkpointer(os.path.join(m.workdir, "checkpoints")) for m in sweep]
    states, start_epoch = _restore_common(ckpts, fresh)
    start_step = start_epoch * setup.steps_per_epoch
    images = search_run.alpha_images(config, setup.space)
    writers = [MetricsWriter(m.workdir, images=images) for m in sweep]
    for w in writers:
        w.truncate_after("epoch", start_epoch)
    progress = Progress("sweep search", setup.total_steps, start_step, config.log_every_seconds)
    if start_step >= setup.total_steps:
        logger.info("Sweep search already finished (%d steps); not redone.", setup.total_steps)
    # Data and epoch inputs are shared: only the states and the keys carry the seed.
    stage = search_run.SearchStage(config, setup, search_data, member_keys)
    runs = [
        loop_lib.RunFiles(w, c, label=f"seed {m.seed} ({m.workdir})")
        for m, w, c in zip(sweep, writers, ckpts, strict=True)
    ]
    loop = loop_lib.EpochLoop(stage, keys=loop_lib.stack(member_keys), shared=search_data,
                              runs=runs, progress=progress, seeds=len(sweep))  # fmt: skip
    try:
        state_K = loop.run(loop_lib.stack(states), range(start_epoch, config.search.epochs))
    finally:
        for closable in (*writers, *ckpts):
            closable.close()
    return loop_lib.unstack(state_K), setup, search_data


def _read_json(path: str) -> dict | None:
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def _last_record(path: str) -> dict | None:
    records = read_jsonl(path)
    return records[-1] if records else None


def _numbers(obj: dict, prefix: str = "") -> dict[str, float]:
    """The numeric leaves of a JSON object as dotted keys, bookkeeping left out."""
    out = {}
    for k, v in obj.items():
        if k in _NOT_RESULTS:
            continue
        if isinstance(v, dict):
            out.update(_numbers(v, f"{prefix}{k}."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out[f"{prefix}{k}"] = float(v)
    return out


def member_result(m: Member, workdir: str) -> dict:
    """What member m's folder holds: genotypes, final search metrics, result.json."""
    run: dict = {"seed": m.seed, "workdir": os.path.relpath(m.workdir, workdir)}
    g = _read_json(os.path.join(m.workdir, "genotype.json"))
    if g is not None:
        run.update(genotype=g["text"], genotype_method=g["method"])
    magnitude = _read_json(os.path.join(m.workdir, "genotype_magnitude.json"))
    if magnitude is not None:
        run["magnitude_genotype"] = magnitude["text"]
    last = _last_record(os.path.join(m.workdir, "metrics.jsonl"))
    if last is not None:
        run["search"] = {k: v for k, v in _numbers(last).items() if "." not in k}
    result = _read_json(os.path.join(m.workdir, "result.json"))
    if result is not None:  # the evaluated genotype (config.genotype when given)
        run["genotype"] = result["genotype_text"]
        run["evaluate"] = _numbers({k: v for k, v in result.items() if k != "genotype"})
    return run


def summarize(workdir: str, sweep: list[Member]) -> dict:
    """Writes `<workdir>/summary.json` (per member and mean/std over members of every
    numeric result; std with ddof=1) and logs a short table; returns the summary."""
    runs = [member_result(m, workdir) for m in sweep]
    numbers = [_numbers({k: r[k] for k in ("search", "evaluate") if k in r}) for r in runs]
    shared = [k for k in numbers[0] if all(k in n for n in numbers)]
    values = {k: np.array([n[k] for n in numbers]) for k in shared}
    ddof = 1 if len(runs) > 1 else 0
    genotypes: dict[str, int] = {}
    for r in runs:
        if "genotype" in r:
            genotypes[r["genotype"]] = genotypes.get(r["genotype"], 0) + 1
    summary = {
        "num_seeds": len(runs),
        "seeds": [r["seed"] for r in runs],
        "runs": runs,
        "mean": {k: float(v.mean()) for k, v in values.items()},
        "std": {k: float(v.std(ddof=ddof)) for k, v in values.items()},
        "std_ddof": ddof,
        "genotype_counts": genotypes,
    }
    write_json(os.path.join(workdir, "summary.json"), summary)
    logger.info("%s", format_table(summary))
    return summary


def format_table(summary: dict) -> str:
    """Seed, genotype and the headline numbers, then mean +- std."""
    heads = [k for k in ("search.valid_eval_acc", "evaluate.test_accuracy") if k in summary["mean"]]
    lines = [f"Sweep of {summary['num_seeds']} seeds: " + " | ".join(["seed", *heads, "genotype"])]
    for r, n in zip(summary["runs"], _per_run(summary), strict=True):
        cells = [str(r["seed"]), *(f"{n[h]:.2f}" for h in heads), r.get("genotype", "-")]
        lines.append("  " + " | ".join(cells))
    mean, std = summary["mean"], summary["std"]
    cells = ["mean +- std", *(f"{mean[h]:.2f} +- {std[h]:.2f}" for h in heads)]
    lines.append("  " + " | ".join(cells))
    lines.append(f"  {len(summary['genotype_counts'])} distinct genotype(s)")
    return "\n".join(lines)


def _per_run(summary: dict) -> list[dict[str, float]]:
    return [_numbers({k: r[k] for k in ("search", "evaluate") if k in r}) for r in summary["runs"]]
