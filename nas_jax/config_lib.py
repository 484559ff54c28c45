"""Config-file helpers: the ':arg' suffix parser and validation with one-line errors."""

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
            out[key] = value.lower() in ("1", "true", "yes")
        else:
            out[key] = type(default)(value) if default is not None else value
    return out


def check_choice(name: str, value, accepted: Iterable) -> None:
    accepted = list(accepted)
    if value not in accepted:
        raise ConfigError(
            f"{name}={value!r} is not accepted; accepted: {', '.join(map(str, accepted))}"
        )


def check_positive(name: str, value, *, allow_zero: bool = False) -> None:
    if not isinstance(value, (int, float)) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name}={value!r} must be a number {bound}")


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
    from nas_jax.selection.run import default_config as select_defaults  # no import cycle

    c.select = select_defaults()  # used when 'select' is in stages (SPEC 7)
    from nas_jax.evaluation.run import default_config as evaluate_defaults

    c.evaluate = evaluate_defaults()  # used when 'evaluate' is in stages (SPEC 8)
    return c
