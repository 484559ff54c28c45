"""Runs the stages a config lists: search, select, evaluate (in that order), for one seed or,
with config.num_seeds = K > 1, for a batched sweep of K seeds (nas_jax/sweep.py).

Order of work: validate the config against the registries, resolve every input (the
genotype to evaluate, the datasets), and only then write into the workdir, so a bad
value or a missing dataset ends with one `ConfigError` line and nothing written.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import jax
import jaxlib

import nas_jax
from nas_jax import (
    arch,
    config_lib,
    data,
    evaluation,
    families,
    genotype,
    kernels,
    plots,
    precision,
    selection,
    spaces,
    sweep,
)
from nas_jax import workdir as workdir_lib
from nas_jax.evaluation import retrain
from nas_jax.reporting import logger
from nas_jax.search import methods
from nas_jax.search import run as search_run

STAGES = ("search", "select", "evaluate")


def normalize(config) -> None:
    """Accepts the command line's spellings of `stages` (`search,select` becomes
    ('search', 'select'))."""
    if isinstance(config.stages, (str, tuple, list)):
        config.stages = config_lib.parse_stages(config.stages)


def validate(config) -> None:
    """Raises ConfigError (one line naming the value and the accepted ones)."""
    normalize(config)
    chk = config_lib.check_choice
    sweep.validate_num_seeds(config.num_seeds)
    config_lib.check_rules(config)
    stages = tuple(config.stages)
    if not stages:
        raise config_lib.ConfigError(f"stages is empty; accepted stages: {', '.join(STAGES)}")
    for st in stages:
        chk("stages", st, STAGES)
    if list(stages) != sorted(stages, key=STAGES.index):
        raise config_lib.ConfigError(f"stages={stages} must follow the order {STAGES}")
    chk("model.space", config.model.space, spaces.SPACES)
    if "evaluate" in stages:  # first: it explains ImageNet's missing pipeline
        evaluation.validate_config(config)
    chk("data.name", config.data.name, data.DATASETS)
    chk("data.sampler", config.data.sampler, data.SAMPLERS)
    chk("compute_dtype", config.compute_dtype, precision.DTYPES)
    chk("search.method", config.search.method, methods.METHODS)
    try:  # the method's own options (e.g. search.sdarts_noise for sdarts_rs)
        methods.options_from_config(config.search, config.search.lr)
    except ValueError as e:
        raise config_lib.ConfigError(f"search.method={config.search.method!r}: {e}") from None
    if data.DATASETS.get(config.data.name).needs_folder and not config.data.folder:
        raise config_lib.ConfigError(
            f"data.name={config.data.name!r} needs --config.data.folder=PATH"
        )
    fam = families.get_family(spaces.get_space(config.model.space).family)
    searching = {"search", "select"} & set(stages)
    if searching and config.model.layers < fam.min_layers:
        raise config_lib.ConfigError(
            f"model.layers={config.model.layers} is too few for space "
            f"{config.model.space!r}: {fam.name} networks need >= {fam.min_layers} cells to "
            "hold every cell type (reduction cells at layers//3 and 2*layers//3)"
        )
    if config.model.C % 2:
        raise config_lib.ConfigError(f"model.C={config.model.C} must be even (FactorizedReduce)")
    if "select" in stages:
        selection.validate_config(config)
    try:  # the backend settings and their $NAS_JAX_* overrides
        kernels.validate(config.kernels)
    except ValueError as e:
        raise config_lib.ConfigError(str(e)) from None


class Inputs(NamedTuple):
    """What a run reads, resolved before anything is written."""

    search_data: search_run.SearchData | None
    eval_data: retrain.EvalData | None
    genotypes: list  # per member: the genotype evaluate alone reads, or None


def run(config, workdir: str, *, extend: bool = False, overwrite: bool = False,
        allow_backend_change: bool = False) -> dict | None:  # fmt: skip
    """Runs the stages; returns result.json's content when 'evaluate' ran (a sweep:
    summary.json's content). The backend settings of `config.kernels` hold for the run.

    The workdir contract (nas_jax/workdir.py): a workdir that holds a run with another
    config is refused (`WorkdirError`) unless `extend` (more search or retraining epochs:
    continue, redo later stages), `overwrite` (discard it) or, for another backend alone,
    `allow_backend_change`; a workdir in use by another run is refused too.
    """
    validate(config)
    flags = dict(extend=extend, overwrite=overwrite, allow_backend_change=allow_backend_change)
    # Configured before the first computation (the allocator) and for the whole run.
    with kernels.configured(config.kernels) as settings:
        return _run(config, workdir, backend_record(settings), flags)


def check(config, workdir: str | None = None, **flags) -> list[str]:
    """What `run` checks before it writes (the config, its inputs, and with a workdir the
    rerun rules and the lock), without writing; returns lines saying what a run would do.
    Raises the error `run` would raise."""
    validate(config)
    with kernels.configured(config.kernels) as settings:
        resolved = backend_record(settings)
        members = sweep.members(config, workdir or ".") if config.num_seeds > 1 else None
        _resolve_inputs(config, workdir or ".", members)
    lines = [f"config ok: stages {', '.join(config.stages)}, space {config.model.space}, "
             f"data {data.dataset_label(config.data.name, config.data.folder)}, "
             f"seeds {config.num_seeds}"]  # fmt: skip
    if workdir:
        places = [(config, workdir)] + [(m.config, m.workdir) for m in members or ()]
        plans = [workdir_lib.plan(w, c, resolved, **flags) for c, w in places]
        lines.append(f"workdir {workdir}: {workdir_lib.describe(plans[0], workdir)}")
        for w in (w for _, w in places):
            holder = workdir_lib.holder(w)
            if holder is not None:
                raise workdir_lib.WorkdirError(holder)
    return lines


def _run(config, workdir: str, resolved: dict, flags: dict) -> dict | None:
    members = sweep.members(config, workdir) if config.num_seeds > 1 else None
    places = [(config, workdir)] + [(m.config, m.workdir) for m in members or ()]
    for c, w in places:  # refusals before the (slower) inputs, and before any write
        workdir_lib.plan(w, c, resolved, **flags)
    inputs = _resolve_inputs(config, workdir, members)
    with workdir_lib.locked([w for _, w in places]):
        plans = [workdir_lib.plan(w, c, resolved, **flags) for c, w in places]  # under the lock
        for (c, w), p in zip(places, plans, strict=True):
            workdir_lib.apply(w, c, resolved, p)
        _prepare(config)
        return _run_stages(config, workdir, members, inputs)


def _run_stages(config, workdir: str, members, inputs: Inputs) -> dict | None:
    if members is not None:
        return _run_sweep(config, workdir, members, inputs)
    if {"search", "select"} & set(config.stages):
        state, setup, search_data = search_run.run_search(config, workdir, inputs.search_data)
        _finish_search(config, workdir, state, setup, search_data)
    if "evaluate" in config.stages:
        g = inputs.genotypes[0] or evaluation.resolve_genotype(config, workdir)
        return evaluation.run_evaluate(config, workdir, g, eval_data=inputs.eval_data)
    return None


def _resolve_inputs(config, workdir: str, members) -> Inputs:
    searching = bool({"search", "select"} & set(config.stages))
    evaluating = "evaluate" in config.stages
    # Evaluating alone: the genotype must exist before anything is written.
    places = [(m.config, m.workdir) for m in members] if members else [(config, workdir)]
    gs = [None if searching or not evaluating else evaluation.resolve_genotype(c, w)
          for c, w in places]  # fmt: skip
    retraining = evaluating and _retrains(config, gs[0])
    search_data = eval_data = None
    try:  # a missing or unusable dataset is the user's input too
        if searching or retraining:
            kwargs = search_run.dataset_kwargs(config.data)
            train = data.load_dataset(config.data.name, "train", **kwargs)
            if searching:
                search_data = search_run.search_data_from(train, config.data)
            if retraining:
                test = data.load_dataset(config.data.name, "test", **kwargs)
                eval_data = retrain.eval_data_from(train, test)
    except (data.DatasetNotPreparedError, ValueError) as e:
        raise config_lib.ConfigError(f"data.name={config.data.name!r}: {e}") from None
    return Inputs(search_data, eval_data, gs)


def _retrains(config, g) -> bool:
    """Whether the evaluate stage retrains (and needs the train and test splits); before a
    search, the searched space's family decides."""
    space = spaces.get_space(config.model.space)
    fam = families.family_of(g) if g is not None else families.get_family(space.family)
    return evaluation.method_for_family(config.evaluate, fam) == "retrain"


def backend_record(kernel_settings: dict) -> dict:
    """What computed a run beyond its config: the resolved kernel settings (with where each
    came from), the devices and the jax versions."""
    devices = jax.devices()
    return {
        **kernel_settings,
        "devices": f"{len(devices)} x {devices[0].device_kind}",
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "nas_jax": nas_jax.__version__,
    }


def _prepare(config) -> None:
    if config.xla_cache_dir:
        jax.config.update("jax_compilation_cache_dir", os.path.expanduser(config.xla_cache_dir))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def _run_sweep(config, workdir: str, members, inputs: Inputs) -> dict:
    """The search of all seeds at once (vmapped); selection and evaluation seed by seed."""
    if {"search", "select"} & set(config.stages):
        states, setup, search_data = sweep.run_search_sweep(config, members, inputs.search_data)
        for m, state in zip(members, states, strict=True):
            logger.info("Seed %d (%s):", m.seed, m.workdir)
            _finish_search(m.config, m.workdir, state, setup, search_data)
    if "evaluate" in config.stages:
        for m, g in zip(members, inputs.genotypes, strict=True):
            g = g or evaluation.resolve_genotype(m.config, m.workdir)
            evaluation.run_evaluate(m.config, m.workdir, g, eval_data=inputs.eval_data)
    return sweep.summarize(workdir, members)


def _finish_search(config, workdir: str, state, setup, search_data) -> None:
    """The alpha pictures of the search; then selection when 'select' is a stage, else
    the magnitude genotype of the search."""
    plots.maybe_write_alpha_plots(workdir, setup.space, title=f"{config.search.method} search")
    if "select" in config.stages:
        selection.run_select(config, workdir, state, setup, search_data)  # logs the genotype
    else:
        g = genotype.derive_genotype(setup.space, arch.mixing_weights(state.arch))
        genotype.save_json(
            g, os.path.join(workdir, "genotype.json"), method="magnitude",
            space=setup.space.name, stage="search",
        )  # fmt: skip
        logger.info("Magnitude genotype: %s", g.to_text())
