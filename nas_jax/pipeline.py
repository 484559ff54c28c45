"""Runs the stages a config lists: search, select, evaluate (in that order), for one seed or,
with config.num_seeds = K > 1, for a batched sweep of K seeds (nas_jax/sweep.py)."""

from __future__ import annotations

import json
import os

import jax

from nas_jax import (
    arch,
    config_lib,
    data,
    evaluation,
    genotype,
    precision,
    selection,
    spaces,
    sweep,
)
from nas_jax.reporting import logger, write_json
from nas_jax.search import loop, methods

STAGES = ("search", "select", "evaluate")


def validate(config) -> None:
    """Raises ConfigError (one line naming the value and the accepted ones)."""
    chk = config_lib.check_choice
    sweep.validate_num_seeds(config.num_seeds)
    stages = tuple(config.stages)
    if not stages:
        raise config_lib.ConfigError(f"stages is empty; accepted stages: {', '.join(STAGES)}")
    for st in stages:
        chk("stages", st, STAGES)
    if list(stages) != sorted(stages, key=STAGES.index):
        raise config_lib.ConfigError(f"stages={stages} must follow the order {STAGES}")
    if "evaluate" in stages:
        evaluation.validate_config(config)
    chk("data.name", config.data.name, data.LOADERS)
    chk("data.sampler", config.data.sampler, data.SAMPLERS)
    chk("model.space", config.model.space, spaces.SPACES)
    chk("compute_dtype", config.compute_dtype, precision.DTYPES)
    chk("search.method", config.search.method, methods.METHODS)
    chk("search.sdarts_noise", config.search.sdarts_noise, ("uniform", "gaussian"))
    if config.data.name == "image_folder" and not config.data.folder:
        raise config_lib.ConfigError("data.name='image_folder' needs --config.data.folder=PATH")
    if not 0.0 < config.data.train_portion < 1.0:
        raise config_lib.ConfigError(
            f"data.train_portion={config.data.train_portion} must be in (0, 1)"
        )
    for name in ("data.batch_size", "model.C", "model.layers", "search.epochs",
                 "search.checkpoint_every", "model.nb201_cells"):  # fmt: skip
        section, key = name.split(".")
        config_lib.check_positive(name, config[section][key])
    if "select" in stages:
        selection.validate_config(config)
    if config.model.C % 2:
        raise config_lib.ConfigError(f"model.C={config.model.C} must be even (FactorizedReduce)")


def run(config, workdir: str) -> dict | None:
    """Runs the stages; returns result.json's content when 'evaluate' ran (a sweep:
    summary.json's content)."""
    validate(config)
    if config.num_seeds > 1:
        return _run_sweep(config, workdir)
    searching = bool({"search", "select"} & set(config.stages))
    # Evaluating alone: the genotype must exist before anything is written.
    g = None if searching else evaluation.resolve_genotype(config, workdir)
    _prepare(config, workdir)
    if searching:
        _search_and_select(config, workdir)
    if "evaluate" in config.stages:
        return evaluation.run_evaluate(
            config, workdir, g or evaluation.resolve_genotype(config, workdir)
        )
    return None


def _prepare(config, workdir: str) -> None:
    if config.xla_cache_dir:
        jax.config.update("jax_compilation_cache_dir", os.path.expanduser(config.xla_cache_dir))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    os.makedirs(workdir, exist_ok=True)
    write_json(os.path.join(workdir, "config.json"), json.loads(config.to_json_best_effort()))


def _run_sweep(config, workdir: str) -> dict:
    """The search of all seeds at once (vmapped); selection and evaluation seed by seed."""
    members = sweep.members(config, workdir)
    searching = bool({"search", "select"} & set(config.stages))
    gs = [None if searching else evaluation.resolve_genotype(m.config, m.workdir)
          for m in members]  # fmt: skip
    _prepare(config, workdir)
    for m in members:
        os.makedirs(m.workdir, exist_ok=True)
        write_json(
            os.path.join(m.workdir, "config.json"), json.loads(m.config.to_json_best_effort())
        )
    if searching:
        states, setup, search_data = sweep.run_search_sweep(config, members)
        for m, state in zip(members, states, strict=True):
            logger.info("Seed %d (%s):", m.seed, m.workdir)
            _finish_search(m.config, m.workdir, state, setup, search_data)
    if "evaluate" in config.stages:
        for m, g in zip(members, gs, strict=True):
            g = g or evaluation.resolve_genotype(m.config, m.workdir)
            evaluation.run_evaluate(m.config, m.workdir, g)
    return sweep.summarize(workdir, members)


def _search_and_select(config, workdir: str) -> None:
    # A finished search is restored, not redone ('select' alone needs a searched supernet).
    state, setup, search_data = loop.run_search(config, workdir)
    _finish_search(config, workdir, state, setup, search_data)


def _finish_search(config, workdir: str, state, setup, search_data) -> None:
    """PT selection when 'select' is a stage, else the magnitude genotype of the search."""
    if "select" in config.stages:
        selection.run_select(config, workdir, state, setup, search_data)  # logs the genotype
    else:
        g = genotype.derive_genotype(setup.space, arch.mixing_weights(state.arch))
        genotype.save_json(
            g, os.path.join(workdir, "genotype.json"), method="magnitude",
            space=setup.space.name, stage="search",
        )  # fmt: skip
        logger.info("Magnitude genotype: %s", g.to_text())
