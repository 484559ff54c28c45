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

from nas_jax import config_lib, data, families, genotype, networks, spaces
from nas_jax.evaluation import lookup, retrain
from nas_jax.genotype import AnyGenotype, NB201Genotype
from nas_jax.reporting import logger, write_json

METHODS = ("auto", "lookup", "retrain")
LR_SCHEDULES = ("cosine", "exponential")


def validate_config(config) -> None:
    """One-line ConfigErrors, before any file is written."""
    ev, chk = config.evaluate, config_lib.check_choice
    chk("evaluate.method", ev.method, METHODS)
    chk("evaluate.nb201_source", ev.nb201_source, lookup.SOURCES)
    chk("evaluate.lr_schedule", ev.lr_schedule, LR_SCHEDULES)
    chk("evaluate.sampler", ev.sampler, data.SAMPLERS)
    # Numbers and booleans: config_lib.RULES (checked first, by pipeline.validate).
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
    spec = data.DATASETS.get(config.data.name) if config.data.name in data.DATASETS else None
    size = spec.image_size if spec else None
    fam = (
        families.family_of(parse_genotype(config.genotype))
        if config.genotype
        else families.get_family(spaces.get_space(config.model.space).family)
    )
    depth = fam.network_size(ev)[1]
    if depth < fam.min_layers:
        raise config_lib.ConfigError(
            f"evaluate.layers={depth} is too few for a {fam.name} network: it needs >= "
            f"{fam.min_layers} cells to hold every cell type of the genotype"
        )
    if ev.auxiliary and not ev.imagenet and size is not None and size // 4 < 5:
        if fam.auxiliary_head and ev.method != "lookup":
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
    space = spaces.get_space(config.model.space)
    searched_lookup = families.get_family(space.family).benchmark_lookup
    if ev.method == "lookup" and searching and not searched_lookup:
        raise config_lib.ConfigError(
            f"evaluate.method='lookup' needs NB201 cells; model.space={config.model.space!r}"
        )
    if config.genotype and resolve_method(ev, parse_genotype(config.genotype)) == "lookup":
        lookup.arch_string(parse_genotype(config.genotype))  # a DARTS cell: BenchmarkError
    if ev.nb201_source == "csv" and method_for_family(ev, fam) == "lookup":
        lookup.load_table(ev.nb201_table)  # malformed: one BenchmarkError line, now (cached)


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
    """'auto': a lookup for cells of a benchmarked family when a table is given."""
    return method_for_family(ev, families.family_of(g))


def method_for_family(ev, fam: families.Family) -> str:
    """`resolve_method` for any cell of family `fam` (known before a search ends)."""
    if ev.method != "auto":
        return ev.method
    return "lookup" if fam.benchmark_lookup and ev.nb201_table else "retrain"


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
    if method == "retrain" and ev.method == "auto" and families.family_of(g).benchmark_lookup:
        logger.info(
            "No evaluate.nb201_table: retraining the NAS-Bench-201 cell on %s (give "
            "--config.evaluate.nb201_table=<csv> to look it up instead)", config.data.name,
        )  # fmt: skip
    if method == "lookup":
        found = lookup.lookup(g, ev.nb201_table, ev.nb201_source)
        spec = data.DATASETS.get(config.data.name) if config.data.name in data.DATASETS else None
        column = (spec and spec.nb201_column) or "cifar10"
        if not (spec and spec.nb201_column):
            logger.warning(
                "data.name=%r has no NAS-Bench-201 column; result.json reports the "
                "benchmark's %s accuracy", config.data.name, column,
            )  # fmt: skip
        acc = found.test_accuracy[column]
        result.update(
            dataset=column, test_accuracy=acc, test_error=100.0 - acc,
            nb201_test_accuracy=found.test_accuracy,
            benchmark={"source": found.source, "table": found.table, "metric": found.metric,
                       "arch": found.arch},
            params_M=nb201_benchmark_params(g, lookup.NUM_CLASSES[column]) / 1e6,
        )  # fmt: skip
    else:
        numbers, _ = retrain.retrain(config, workdir, g, eval_data)
        result.update(dataset=data.dataset_label(config.data.name, config.data.folder), **numbers)
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
        lines.append(f"  NAS-Bench-201 {b['metric']}: {accs} (result: {result['dataset']})")
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
