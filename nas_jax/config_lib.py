"""The configuration's bottom layer: every section's defaults, the ':arg' suffix parser
and the one-line error helpers. It imports no stage (the stages import it)."""

from __future__ import annotations

from collections.abc import Iterable

import ml_collections


class ConfigError(ValueError):
    """A bad config value; the message names the value and the accepted ones."""


def parse_arg(arg: str | None, **spec) -> ml_collections.ConfigDict:
    """Parses 'smoke,space=s5,dataset=cifar10' against `spec` (name -> default).

    A bare word sets a boolean default to True; `key=value` converts value to the
    default's type. Unknown keys raise ConfigError listing the accepted ones.
    """
    out = ml_collections.ConfigDict(dict(spec))
    for item in filter(None, (arg or "").split(",")):
        key, sep, value = item.partition("=")
        key = key.strip()
        if key not in spec:
            raise ConfigError(f"Unknown config arg {key!r}; accepted: {', '.join(spec)}")
        default = spec[key]
        if not sep:
            if not isinstance(default, bool):
                raise ConfigError(f"Config arg {key!r} needs a value ({key}=...)")
            out[key] = True
        elif isinstance(default, bool):
            if value.lower() not in ("1", "true", "yes", "0", "false", "no"):
                raise ConfigError(f"Config arg {key}={value!r} is not accepted; accepted: "
                                  "true, false (or the bare word for true)")  # fmt: skip
            out[key] = value.lower() in ("1", "true", "yes")
        elif default is None:
            out[key] = value
        else:
            try:
                out[key] = type(default)(value)
            except ValueError:
                raise ConfigError(f"Config arg {key}={value!r} must be of type "
                                  f"{type(default).__name__}") from None  # fmt: skip
    return out


def parse_stages(value) -> tuple[str, ...]:
    """('search', 'select') from any of the command line's spellings: a tuple, a list,
    'search,select', "('search','select')", '[search, select]'."""
    items = [value] if isinstance(value, str) else list(value)
    out = []
    for item in items:
        for part in str(item).replace(";", ",").split(","):
            part = part.strip().strip("[]()").strip().strip("'\"").strip()
            if part:
                out.append(part)
    return tuple(out)


def check_choice(name: str, value, accepted: Iterable) -> None:
    accepted = list(accepted)
    if value not in accepted:
        raise ConfigError(
            f"{name}={value!r} is not accepted; accepted: {', '.join(map(str, accepted))}"
        )


def check_number(name: str, value, rule: str) -> None:
    """Checks `value` against a rule: 'int' or 'float', then bounds such as '> 0',
    '>= 0', '< 1', '<= 1' (space separated pairs), e.g. 'float >= 0 < 1'."""
    kind, *bounds = rule.split()
    ok = not isinstance(value, bool) and (
        isinstance(value, int) if kind == "int" else isinstance(value, (int, float))
    )
    ops = {">": float.__gt__, ">=": float.__ge__, "<": float.__lt__, "<=": float.__le__}
    pairs = list(zip(bounds[::2], bounds[1::2], strict=True))
    ok = ok and value == value and all(ops[op](float(value), float(b)) for op, b in pairs)
    if not ok:
        raise ConfigError(f"{name}={value!r} must be {rule_text(rule)}")


def rule_text(rule: str) -> str:
    """'float > 0 < 1' -> 'a number > 0 and < 1'; 'bool' -> 'True or False'."""
    if rule == "bool":
        return "True or False"
    kind, *bounds = rule.split()
    what = "an integer" if kind == "int" else "a number"
    pairs = zip(bounds[::2], bounds[1::2], strict=True)
    return f"{what} {' and '.join(map(' '.join, pairs))}"


def check_bool(name: str, value) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{name}={value!r} must be True or False")


# Every numeric and boolean key of the config and what its meaning allows; checked before a
# run writes anything (pipeline.validate).
RULES = {
    "seed": "int >= 0",
    "log_every_seconds": "float >= 0",
    "divergence_factor": "float >= 0",
    "data.train_portion": "float > 0 < 1",
    "data.batch_size": "int > 0",
    "data.pad": "int >= 0",
    "data.flip": "bool",
    "data.cutout_length": "int >= 0",
    "data.cutout_prob": "float >= 0 <= 1",
    "data.eval_batches": "int >= 0",
    "model.C": "int > 0",
    "model.layers": "int > 0",
    "model.nb201_cells": "int > 0",
    "search.epochs": "int > 0",
    "search.steps_per_epoch": "int >= 0",
    "search.lr": "float > 0",
    "search.lr_min": "float >= 0",
    "search.momentum": "float >= 0 < 1",
    "search.weight_decay": "float >= 0",
    "search.grad_clip": "float > 0",
    "search.arch_lr": "float > 0",
    "search.arch_b1": "float >= 0 < 1",
    "search.arch_b2": "float >= 0 < 1",
    "search.arch_weight_decay": "float >= 0",
    "search.epsilon_min": "float >= 0",
    "search.epsilon_max": "float >= 0",
    "search.pgd_steps": "int > 0",
    "search.fixed_uniform": "bool",
    "search.checkpoint_every": "int > 0",
    "select.tune_epochs": "int >= 0",
    "select.tune_lr_factor": "float > 0",
    "select.eval_batches": "int >= 0",
    "select.score_chunk": "int >= 0",
    "select.write_back_stats": "bool",
    "select.log_accuracy": "bool",
    "evaluate.C": "int > 0",
    "evaluate.layers": "int > 0",
    "evaluate.auxiliary": "bool",
    "evaluate.auxiliary_weight": "float >= 0",
    "evaluate.drop_path_prob": "float >= 0 < 1",
    "evaluate.imagenet": "bool",
    "evaluate.nb201_C": "int > 0",
    "evaluate.nb201_cells": "int > 0",
    "evaluate.epochs": "int > 0",
    "evaluate.steps_per_epoch": "int >= 0",
    "evaluate.batch_size": "int > 0",
    "evaluate.lr": "float > 0",
    "evaluate.lr_min": "float >= 0",
    "evaluate.lr_gamma": "float > 0 <= 1",
    "evaluate.momentum": "float >= 0 < 1",
    "evaluate.weight_decay": "float >= 0",
    "evaluate.grad_clip": "float > 0",
    "evaluate.label_smoothing": "float >= 0 < 1",
    "evaluate.cutout_length": "int >= 0",
    "evaluate.cutout_prob": "float >= 0 <= 1",
    "evaluate.eval_every": "int > 0",
    "evaluate.eval_batches": "int >= 0",
    "evaluate.checkpoint_every": "int > 0",
}


def check_rules(config) -> None:
    """Every key of `RULES` (ConfigError: one line naming the key, the value and the rule)."""
    for name, rule in RULES.items():
        value = config
        for part in name.split("."):
            value = value[part]
        if rule == "bool":
            check_bool(name, value)
        else:
            check_number(name, value, rule)
    s = config.search
    if s.epsilon_min > s.epsilon_max:
        raise ConfigError(f"search.epsilon_min={s.epsilon_min} must be <= search.epsilon_max="
                          f"{s.epsilon_max}")  # fmt: skip
    for section in ("search", "evaluate"):
        if config[section].lr_min > config[section].lr:
            raise ConfigError(f"{section}.lr_min={config[section].lr_min} must be <= "
                              f"{section}.lr={config[section].lr}")  # fmt: skip


def base_config() -> ml_collections.ConfigDict:
    """Reference hyper-parameters (SPEC 6, 15); config files override what differs."""
    c = ml_collections.ConfigDict()
    c.seed = 2
    # K > 1: K independent searches and selections in one program (nas_jax/sweep.py): seed
    # k = seed + k, one workdir subfolder seed_<k>/ each, summary.json with mean and std.
    c.num_seeds = 1
    c.stages = ("search", "select")  # the paper's method: search, then PT selection
    # The genotype that stages=('evaluate',) evaluates: a registered name, a genotype.json
    # path or a text form; '' = the workdir's genotype.json (written by search/select).
    c.genotype = ""
    c.log_every_seconds = 10.0
    # A search or retraining whose epoch train loss exceeds this factor times its first
    # epoch's stops as diverged (like a NaN loss); 0 = off.
    c.divergence_factor = 10.0
    # Mixed precision (nas_jax/precision.py): 'bfloat16' computes the networks in bfloat16
    # with float32 parameters, optimizer state, BN statistics and loss (accelerators).
    c.compute_dtype = "float32"
    # XLA's persistent compilation cache: a resumed or repeated run skips recompiling
    # (minutes for the DARTS supernets on CPU). Empty string = off.
    c.xla_cache_dir = "~/.cache/nas_jax/xla"
    c.data = dict(
        name="cifar10",
        data_dir="~/tensorflow_datasets",
        folder="",  # image_folder: the folder with train/<class>/*.jpg
        # Where image folders are converted (once) for reading: <cache_dir>/image_folder/.
        # '' = $XDG_CACHE_HOME/nas_jax, else ~/.cache/nas_jax.
        cache_dir="",
        train_portion=0.5,
        batch_size=64,
        sampler="iid",  # the reference's independent random batches; 'epoch' = shuffled passes
        pad=4,  # random-crop padding
        flip=True,
        cutout_length=0,  # search: off (SPEC 15); when on, prob ramps over the epochs
        cutout_prob=1.0,
        eval_batches=0,  # 0 = the whole valid half for per-epoch logging
    )
    c.model = dict(space="s5", C=16, layers=8, nb201_cells=5)
    c.search = dict(
        method="darts",
        epochs=50,
        steps_per_epoch=0,  # 0 = ceil(train half / batch), the reference's epoch
        lr=0.025,
        lr_min=0.001,
        momentum=0.9,
        weight_decay=3e-4,
        grad_clip=5.0,
        arch_lr=3e-4,
        arch_b1=0.5,
        arch_b2=0.999,
        arch_weight_decay=1e-3,
        epsilon_min=0.03,  # SDARTS epsilon ramps epsilon_min -> epsilon_max over the epochs
        epsilon_max=0.3,
        sdarts_noise="uniform",  # the reference; 'gaussian' is the paper's wording
        pgd_steps=7,
        fixed_uniform=False,  # fixed_alpha: exactly uniform weights instead of frozen init
        checkpoint_every=10,
    )
    c.select = select_defaults()  # used when 'select' is in stages (SPEC 7)
    c.evaluate = evaluate_defaults()  # used when 'evaluate' is in stages (SPEC 8)
    # Backend settings of the compiled programs (nas_jax/kernels): 'auto' = the measured
    # best for the backend, or the NAS_JAX_* environment override. Resolved once when a
    # run starts; config.json records what was resolved.
    c.kernels = dict(depthwise="auto", materialize="auto", malloc="auto")
    return c


def select_defaults() -> ml_collections.ConfigDict:
    """Defaults of `config.select` (the reference's PT, SPEC 7, 15)."""
    return ml_collections.ConfigDict(
        dict(
            method="pt",  # a registered selector: 'pt', 'pt_mag', 'magnitude' (DARTS), ...
            criterion="acc",  # op decision: 'acc' (argmin acc when removed) or 'loss'
            edge_criterion="acc",  # topology decision, same choices
            topology="iterative",  # the reference's elimination; 'one_shot' = the paper's
            edge_order="random",  # 'random' (from the seed), 'fixed', 'reverse'
            tune_epochs=5,  # the reference's proj_intv; 0 = no tuning
            tune_lr_factor=0.1,  # tuning lr = search.lr * factor
            tune_schedule="constant",  # the reference (its cosine is never stepped); 'cosine'
            eval_batches=0,  # batches per scoring pass; 0 = the whole valid half
            score_chunk=0,  # variants scored at once; 0 = all (vmap)
            write_back_stats=False,  # True = scoring updates BN running stats (reference)
            log_accuracy=True,  # log the supernet's accuracy before/after every decision
        )
    )


def evaluate_defaults() -> ml_collections.ConfigDict:
    """Defaults of `config.evaluate`: the DARTS CIFAR-10 protocol (SPEC 8.1, 15)."""
    return ml_collections.ConfigDict(
        dict(
            method="auto",  # 'auto' | 'lookup' | 'retrain' (see nas_jax/evaluation/run.py)
            nb201_table="",  # NB201 lookup: CSV arch,cifar10,cifar100,ImageNet16-120
            nb201_source="csv",  # or 'nats_bench' (nb201_table = the NATS-Bench file path)
            C=36,
            layers=20,
            auxiliary=True,
            auxiliary_weight=0.4,
            drop_path_prob=0.2,  # ramped linearly: p_e = p * e / epochs; 0 = off
            imagenet=False,  # the ImageNet network (SPEC 4.2)
            nb201_C=16,  # retraining an NB201 cell: the benchmark's network size
            nb201_cells=5,
            epochs=600,
            steps_per_epoch=0,  # 0 = ceil(train split / batch) (521 for CIFAR-10)
            batch_size=96,
            sampler="epoch",  # the reference's shuffled loader; 'iid' = independent batches
            lr=0.025,
            lr_min=0.0,
            lr_schedule="cosine",  # per epoch; 'exponential' = lr * lr_gamma**epoch
            lr_gamma=0.97,
            momentum=0.9,
            weight_decay=3e-4,
            grad_clip=5.0,
            label_smoothing=0.0,
            cutout_length=16,  # 0 = off; applied with fixed probability cutout_prob
            cutout_prob=1.0,
            eval_every=1,  # test every n epochs (the reference: 1); the last epoch always
            eval_batches=0,  # 0 = the whole test split; n = the first n batches (smoke runs)
            checkpoint_every=10,  # epochs
        )
    )


# Overrides of the evaluate defaults per dataset (SPEC 8.1-8.3, 15), for the config files:
# c.evaluate.update(evaluate_protocol(dataset, smoke)).
_PROTOCOLS = {
    "cifar10": {},  # SPEC 8.1 = the defaults (also for image_folder)
    "image_folder": {},
    "cifar100": dict(C=16, layers=8),  # SPEC 8.2 (R-DARTS protocol)
    "svhn_cropped": dict(C=16, layers=8),
    # Not a reference protocol: 16 px images are too small for the aux head.
    "imagenet16_120": dict(C=16, layers=8, auxiliary=False),
    # The 8x8 digits (quickstart): a small network, minutes on a CPU.
    "digits": dict(C=8, layers=5, auxiliary=False, cutout_length=4, epochs=10, batch_size=64),
    "imagenet": dict(  # SPEC 8.3 (train_imagenet.py defaults)
        imagenet=True, C=48, layers=14, auxiliary=False, drop_path_prob=0.0, epochs=250,
        batch_size=128, lr=0.1, lr_schedule="exponential", lr_gamma=0.97, weight_decay=3e-5,
        label_smoothing=0.1, cutout_length=0,
    ),
}  # fmt: skip
_EVALUATE_SMOKE = dict(C=4, layers=3, nb201_C=4, nb201_cells=1, epochs=2, steps_per_epoch=2,
                       batch_size=8, eval_batches=2, checkpoint_every=1)  # fmt: skip


def evaluate_protocol(dataset: str, smoke: bool = False) -> dict:
    """`config.evaluate` overrides for retraining on `dataset` (smoke: tiny and short)."""
    check_choice("dataset", dataset, _PROTOCOLS)
    return {**_PROTOCOLS[dataset], **(_EVALUATE_SMOKE if smoke else {})}
