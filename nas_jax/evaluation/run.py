"""The evaluate stage: NAS-Bench-201 lookup or retraining, then `<workdir>/result.json`.

Method ('evaluate.method'):
- 'auto' (default): 'lookup' for an NB201 cell when `evaluate.nb201_table` is set,
  'retrain' otherwise;
- 'lookup': NB201 cells only, the benchmark's 200-epoch test accuracies (SPEC 8.4);
- 'retrain': train the discrete network from scratch and test it (SPEC 8.1-8.3).

The genotype is `config.genotype` (a registered name, a genotype.json path or a text
form) or, when that is empty, the workdir's genotype.json written by search/select.
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import ml_collections

from nas_jax import config_lib, data, genotype, networks
from nas_jax.evaluation import lookup, retrain
from nas_jax.genotype import AnyGenotype, NB201Genotype
from nas_jax.reporting import logger, write_json

METHODS = ("auto", "lookup", "retrain")
LR_SCHEDULES = ("cosine", "exponential")
NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "ImageNet16-120": 120}


def default_config() -> ml_collections.ConfigDict:
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


# Overrides of the defaults per dataset (SPEC 8.1-8.3, 15); used by configs/evaluate.py
# and meant for the search families' configs too: c.evaluate.update(protocol(dataset)).
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
_IMAGE_SIZE = {"digits": 8, "imagenet16_120": 16}  # too small for the CIFAR aux head
SMOKE = dict(C=4, layers=3, nb201_C=4, nb201_cells=1, epochs=2, steps_per_epoch=2,
             batch_size=8, eval_batches=2, checkpoint_every=1)  # fmt: skip


def protocol(dataset: str, smoke: bool = False) -> dict:
    """`config.evaluate` overrides for retraining on `dataset` (smoke: tiny and short)."""
    config_lib.check_choice("dataset", dataset, _PROTOCOLS)
    return {**_PROTOCOLS[dataset], **(SMOKE if smoke else {})}


def validate_config(config) -> None:
    """One-line ConfigErrors, before any file is written."""
    ev, chk = config.evaluate, config_lib.check_choice
    chk("evaluate.method", ev.method, METHODS)
    chk("evaluate.nb201_source", ev.nb201_source, lookup.SOURCES)
    chk("evaluate.lr_schedule", ev.lr_schedule, LR_SCHEDULES)
    chk("evaluate.sampler", ev.sampler, data.SAMPLERS)
    for name in ("C", "layers", "nb201_C", "nb201_cells", "epochs", "batch_size", "lr",
                 "checkpoint_every"):  # fmt: skip
        config_lib.check_positive(f"evaluate.{name}", ev[name])
    for name in ("steps_per_epoch", "eval_every", "eval_batches", "cutout_length",
                 "drop_path_prob", "auxiliary_weight", "weight_decay", "lr_min",
                 "label_smoothing"):  # fmt: skip
        config_lib.check_positive(f"evaluate.{name}", ev[name], allow_zero=True)
    if not ev.drop_path_prob < 1.0:
        raise config_lib.ConfigError(f"evaluate.drop_path_prob={ev.drop_path_prob} must be < 1")
    if ev.C % 2:
        raise config_lib.ConfigError(f"evaluate.C={ev.C} must be even (FactorizedReduce)")
    if ev.imagenet:
        raise config_lib.ConfigError(
            "evaluate.imagenet=True: ImageNet retraining (SPEC 8.3) needs a streaming 224 px "
            "input pipeline, which is not implemented; the network itself builds "
            "(python -m nas_jax.summary --genotype G --imagenet)"
        )
    searching = {"search", "select"} & set(config.stages)
    if config.genotype and searching:
        raise config_lib.ConfigError(
            f"genotype={config.genotype!r} is for stages=('evaluate',) only; with "
            f"{sorted(searching)} the evaluated genotype is the one the search selects"
        )
    if ev.auxiliary and not ev.imagenet and config.data.name in _IMAGE_SIZE:
        darts_cell = (
            not isinstance(parse_genotype(config.genotype), NB201Genotype)
            if config.genotype
            else config.model.space != "nb201"
        )
        if darts_cell and ev.method != "lookup":
            size = _IMAGE_SIZE[config.data.name]
            raise config_lib.ConfigError(
                f"evaluate.auxiliary=True needs images of at least 20 px; {config.data.name} "
                f"has {size} px: set --config.evaluate.auxiliary=False"
            )
    if ev.nb201_table and ev.nb201_source == "csv":
        table = os.path.expanduser(ev.nb201_table)
        if not os.path.isfile(table):
            raise config_lib.ConfigError(f"evaluate.nb201_table={table!r} does not exist")
    if ev.method == "lookup" and not ev.nb201_table:
        raise config_lib.ConfigError(
            "evaluate.method='lookup' needs --config.evaluate.nb201_table=PATH"
        )
    if ev.method == "lookup" and searching and config.model.space != "nb201":
        raise config_lib.ConfigError(
            f"evaluate.method='lookup' needs NB201 cells; model.space={config.model.space!r}"
        )
    if config.genotype and resolve_method(ev, parse_genotype(config.genotype)) == "lookup":
        lookup.arch_string(parse_genotype(config.genotype))  # a DARTS cell: BenchmarkError


def parse_genotype(spec: str) -> AnyGenotype:
    try:
        return genotype.get_genotype(spec)
    except (ValueError, KeyError) as e:
        raise config_lib.ConfigError(f"genotype: {e}") from None


def resolve_genotype(config, workdir: str) -> AnyGenotype:
    """`config.genotype`, else the workdir's genotype.json (from search/select)."""
    if config.genotype:
        return parse_genotype(config.genotype)
    path = os.path.join(workdir, "genotype.json")
    if not os.path.isfile(path):
        raise config_lib.ConfigError(
            f"no genotype to evaluate: pass --config.genotype=NAME|TEXT|PATH or run the "
            f"search/select stages first ({path} does not exist)"
        )
    return parse_genotype(path)


def resolve_method(ev, g: AnyGenotype) -> str:
    if ev.method != "auto":
        return ev.method
    return "lookup" if isinstance(g, NB201Genotype) and ev.nb201_table else "retrain"


def nb201_benchmark_params(g: NB201Genotype, num_classes: int) -> int:
    """Parameters of the benchmark's network (C=16, N=5) for this cell; shapes only."""
    model = networks.NB201Network(g, C=16, N=5, num_classes=num_classes)
    shapes = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)
    )
    return networks.count_params(shapes["params"])


def run_evaluate(config, workdir: str, g: AnyGenotype, *, eval_data=None) -> dict:
    """Evaluates `g`, writes `<workdir>/result.json` and returns it."""
    t0 = time.time()
    ev = config.evaluate
    method = resolve_method(ev, g)
    result = {"genotype": g.to_json_dict(), "genotype_text": g.to_text(), "method": method}
    if method == "lookup":
        found = lookup.lookup(g, ev.nb201_table, ev.nb201_source)
        column = lookup.COLUMN_OF_DATASET.get(config.data.name, "cifar10")
        acc = found.test_accuracy[column]
        result.update(
            dataset=column, test_accuracy=acc, test_error=100.0 - acc,
            nb201_test_accuracy=found.test_accuracy,
            benchmark={"source": found.source, "table": found.table, "metric": found.metric,
                       "arch": found.arch},
            params_M=nb201_benchmark_params(g, NUM_CLASSES[column]) / 1e6,
        )  # fmt: skip
    else:
        numbers, _ = retrain.retrain(config, workdir, g, eval_data)
        result.update(dataset=config.data.name, **numbers)
    result["wall_seconds"] = time.time() - t0
    write_json(os.path.join(workdir, "result.json"), result)
    logger.info("%s", summary(result))
    return result


def summary(result: dict) -> str:
    """A few human-readable lines."""
    lines = [f"Evaluation ({result['method']}) of {result['genotype_text']}"]
    if result["method"] == "lookup":
        accs = ", ".join(f"{k} {v:.2f}" for k, v in result["nb201_test_accuracy"].items())
        b = result["benchmark"]
        lines.append(f"  NAS-Bench-201 {b['metric']}: {accs}")
        lines.append(f"  table: {b['table']} ({b['source']})")
    else:
        lines.append(
            f"  {result['dataset']}: final-epoch test accuracy {result['test_accuracy']:.2f}% "
            f"(error {result['test_error']:.2f}%) after {result['epochs']} epochs on "
            f"{result['test_examples']} test images; best over epochs "
            f"{result['best_test_accuracy']:.2f}% (epoch {result['best_epoch']})"
        )
    lines.append(f"  params {result['params_M']:.6f} M, {result['wall_seconds']:.1f} s")
    return "\n".join(lines)
