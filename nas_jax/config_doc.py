"""What every config key means and accepts: `python -m nas_jax.main --config X --print_config`
prints a config this way (after its overrides), without running anything.

`MEANINGS` holds one line per key (a test checks that every key of `base_config` has one);
the accepted values come from `config_lib.RULES` for numbers and switches, and from the
registries and option lists for names (`choices`).
"""

from __future__ import annotations

import json

from nas_jax import config_lib

MEANINGS = {
    "seed": "the run's seed: initialisation, batches, augmentation, noise, edge order",
    "num_seeds": "K > 1: K searches with seeds seed..seed+K-1 in one program (W/seed_<k>/)",
    "stages": "what to run, in order: search, select, evaluate (e.g. search,select)",
    "genotype": "stages=evaluate alone: a registered name, a genotype.json path or a text "
    "form; '' = W/genotype.json",
    "log_every_seconds": "seconds between progress lines",
    "divergence_factor": "stop a run whose epoch train loss exceeds this times its first "
    "epoch's (0 = off)",
    "compute_dtype": "dtype of the networks' arithmetic (parameters and optimizer stay float32)",
    "xla_cache_dir": "XLA's persistent compilation cache ('' = off)",
    "data.name": "the dataset",
    "data.data_dir": "where TFDS datasets are prepared (array_record; not image folders)",
    "data.folder": "data.name=image_folder: the folder with train/<class>/*.jpg",
    "data.cache_dir": "image folders are converted once into <cache_dir>/image_folder/ "
    "('' = $XDG_CACHE_HOME/nas_jax or ~/.cache/nas_jax)",
    "data.train_portion": "search: the fraction of the train split that trains the weights; "
    "the rest trains alpha and scores PT",
    "data.batch_size": "search and selection batch size",
    "data.sampler": "search batches: iid (the reference) or epoch (shuffled passes)",
    "data.pad": "random-crop padding in pixels",
    "data.flip": "random horizontal flips",
    "data.cutout_length": "search cutout size in pixels (0 = off)",
    "data.cutout_prob": "search cutout probability at the last epoch (ramped from 0)",
    "data.eval_batches": "batches of the per-epoch validation pass (0 = the whole valid half)",
    "model.space": "the search space",
    "model.C": "supernet initial channels",
    "model.layers": "supernet cells (DARTS family: >= 3)",
    "model.nb201_cells": "NB201 supernet cells per stage",
    "search.method": "the search method",
    "search.epochs": "search epochs",
    "search.steps_per_epoch": "steps per search epoch (0 = one pass over the train half)",
    "search.lr": "weights' SGD learning rate (cosine to lr_min)",
    "search.lr_min": "final weight learning rate of the cosine schedule",
    "search.momentum": "weights' SGD momentum",
    "search.weight_decay": "weights' L2 weight decay",
    "search.grad_clip": "weights' gradient-norm clip",
    "search.arch_lr": "alpha's Adam learning rate",
    "search.arch_b1": "alpha's Adam beta1",
    "search.arch_b2": "alpha's Adam beta2",
    "search.arch_weight_decay": "alpha's L2 weight decay",
    "search.epsilon_min": "SDARTS: perturbation radius at the first epoch",
    "search.epsilon_max": "SDARTS: perturbation radius at the last epoch",
    "search.sdarts_noise": "SDARTS-RS noise: uniform (the reference) or gaussian",
    "search.pgd_steps": "SDARTS-ADV: PGD steps per perturbation",
    "search.fixed_uniform": "fixed_alpha: exactly uniform mixing instead of the frozen init",
    "search.checkpoint_every": "search epochs between checkpoints (the last always)",
    "select.method": "the selector",
    "select.criterion": "op decision: acc (accuracy drop when removed) or loss",
    "select.edge_criterion": "topology decision, same choices",
    "select.topology": "iterative (the reference's elimination) or one_shot (the paper's)",
    "select.edge_order": "order of the edge decisions: random (from the seed), fixed, reverse",
    "select.tune_epochs": "tuning epochs between decisions (0 = no tuning)",
    "select.tune_lr_factor": "tuning learning rate = search.lr times this",
    "select.tune_schedule": "tuning learning rate: constant (the reference) or cosine",
    "select.eval_batches": "batches per scoring pass (0 = the whole valid half)",
    "select.score_chunk": "removal variants scored at once (0 = all; less memory when set)",
    "select.write_back_stats": "scoring updates BN running statistics (the reference)",
    "select.log_accuracy": "log the supernet's accuracy before and after every decision",
    "evaluate.method": "auto (lookup for NB201 cells with a table, else retrain), lookup, retrain",
    "evaluate.nb201_table": "the NAS-Bench-201 accuracy table (CSV, or a NATS-Bench file)",
    "evaluate.nb201_source": "the table's format",
    "evaluate.C": "retraining network's initial channels (DARTS family)",
    "evaluate.layers": "retraining network's cells (DARTS family: >= 3)",
    "evaluate.auxiliary": "the auxiliary head (needs images of >= 20 px)",
    "evaluate.auxiliary_weight": "weight of the auxiliary loss",
    "evaluate.drop_path_prob": "drop-path probability at the last epoch (ramped from 0)",
    "evaluate.imagenet": "the ImageNet network (its input pipeline is not implemented)",
    "evaluate.nb201_C": "retraining an NB201 cell: initial channels",
    "evaluate.nb201_cells": "retraining an NB201 cell: cells per stage",
    "evaluate.epochs": "retraining epochs",
    "evaluate.steps_per_epoch": "steps per retraining epoch (0 = one pass over the train split)",
    "evaluate.batch_size": "retraining batch size",
    "evaluate.sampler": "retraining batches: epoch (the reference's shuffled loader) or iid",
    "evaluate.lr": "retraining SGD learning rate",
    "evaluate.lr_min": "final learning rate of the cosine schedule",
    "evaluate.lr_schedule": "per-epoch schedule: cosine or exponential (lr * lr_gamma**epoch)",
    "evaluate.lr_gamma": "the exponential schedule's factor",
    "evaluate.momentum": "retraining SGD momentum",
    "evaluate.weight_decay": "retraining L2 weight decay",
    "evaluate.grad_clip": "retraining gradient-norm clip",
    "evaluate.label_smoothing": "label smoothing of the retraining loss",
    "evaluate.cutout_length": "retraining cutout size in pixels (0 = off)",
    "evaluate.cutout_prob": "retraining cutout probability",
    "evaluate.eval_every": "epochs between test passes (the last always)",
    "evaluate.eval_batches": "batches of a test pass (0 = the whole test split)",
    "evaluate.checkpoint_every": "retraining epochs between checkpoints (the last always)",
    "kernels.depthwise": "CPU depthwise-conv implementation (auto = the backend's measured best)",
    "kernels.materialize": "how the supernet skips removed ops (auto = the backend's best)",
    "kernels.malloc": "the host allocator (auto = the backend's best)",
}


def choices() -> dict[str, list]:
    """The accepted names of every enumerated key (registries and option lists)."""
    from nas_jax import data, pipeline, precision, selection, spaces
    from nas_jax.evaluation import lookup
    from nas_jax.evaluation import run as evaluation_run
    from nas_jax.kernels.settings import ACCEPTED
    from nas_jax.search import methods, perturb
    from nas_jax.selection import decisions, schedule, selectors, tuning

    del selection  # imported for its registrations
    out = {
        "stages": list(pipeline.STAGES),
        "compute_dtype": list(precision.DTYPES),
        "data.name": list(data.DATASETS),
        "data.sampler": list(data.SAMPLERS),
        "model.space": list(spaces.SPACES),
        "search.method": list(methods.METHODS),
        "search.sdarts_noise": list(perturb.NOISES),
        "select.method": list(selectors.SELECTORS),
        "select.criterion": list(decisions.CRITERIA),
        "select.edge_criterion": list(decisions.CRITERIA),
        "select.topology": list(decisions.TOPOLOGIES),
        "select.edge_order": list(schedule.EDGE_ORDERS),
        "select.tune_schedule": list(tuning.SCHEDULES),
        "evaluate.method": list(evaluation_run.METHODS),
        "evaluate.nb201_source": list(lookup.SOURCES),
        "evaluate.sampler": list(data.SAMPLERS),
        "evaluate.lr_schedule": list(evaluation_run.LR_SCHEDULES),
    }
    for key, accepted in ACCEPTED.items():
        out[f"kernels.{key}"] = ["auto", *accepted]
    return out


def _flat(tree, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def describe(config) -> str:
    """The config, one `key = value  # meaning [accepted]` line per key, by section."""
    flat = _flat(json.loads(config.to_json_best_effort()))
    names = choices()
    width = max(len(f"{k} = {json.dumps(v)}") for k, v in flat.items())
    lines, section = [], None
    for key, value in flat.items():
        head = key.split(".")[0] if "." in key else ""
        if head != section:
            section = head
            lines.append(f"# --- {head or 'run'}")
        rule = config_lib.RULES.get(key)
        accepted = (
            f"one of: {', '.join(map(str, names[key]))}"
            if key in names
            else (config_lib.rule_text(rule) if rule else "")
        )
        meaning = MEANINGS.get(key, "")
        note = f"{meaning} [{accepted}]" if accepted else meaning
        lines.append(f"{f'{key} = {json.dumps(value)}':<{width}}  # {note}")
    return "\n".join(lines)
