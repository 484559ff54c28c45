"""The Python API: what the command line does, from a notebook or a script.

  import nas_jax
  config = nas_jax.configs.get_config("quickstart", "smoke")
  result = nas_jax.run(config, "/tmp/w")           # the config's stages (search, select)
  result.genotype, result.magnitude_genotype, result.search_metrics[-1]
  nas_jax.run_evaluate(config, "/tmp/w").evaluation  # then retrain or look up its genotype
  nas_jax.load("/tmp/w")                           # a finished workdir's results, read-only

Every call follows the workdir contract of the command line (nas_jax/workdir.py): a rerun
resumes, another config is refused (`WorkdirError`) unless `extend`, `overwrite` or
`allow_backend_change` says otherwise. (`run_search`, not `search`: `nas_jax.search` is the
search subpackage.) Progress lines go to stderr through the `nas_jax`
logger (`log=False` leaves logging as it is).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any

from nas_jax import genotype as genotype_lib
from nas_jax import reporting

_FILES = ("config.json", "metrics.jsonl", "decisions.jsonl", "select_metrics.jsonl",
          "evaluate_metrics.jsonl", "genotype.json", "genotype_magnitude.json", "result.json",
          "summary.json", "cells.png", "cells.dot", "checkpoints", "checkpoints_select",
          "checkpoints_evaluate", "tensorboard")  # fmt: skip


@dataclasses.dataclass(frozen=True)
class RunResult:
    """What a workdir holds after a run (None / empty where a stage did not run).

    genotype: genotype.json's genotype (the selected one; after a search alone, the
        magnitude read-out), with `genotype_method` ('pt', 'magnitude', ...).
    magnitude_genotype: the DARTS rule on the same supernet (genotype_magnitude.json).
    evaluation: result.json (test accuracy, parameters, ...); a sweep: None per member,
        see `summary`.
    summary: a sweep's summary.json (per seed, mean and std).
    search_metrics, decisions: metrics.jsonl and decisions.jsonl records.
    config: config.json (the config, what it resolved to, the per-stage identity).
    paths: artifact name -> path, for those that exist.
    """

    workdir: str
    genotype: Any
    genotype_method: str | None
    magnitude_genotype: Any
    evaluation: dict | None
    summary: dict | None
    search_metrics: list[dict]
    decisions: list[dict]
    config: dict
    paths: dict[str, str]

    def show(self) -> str:
        """The workdir in words, as `python -m nas_jax.show` prints it."""
        from nas_jax import show

        return show.format_summary(show.summarize(self.workdir))


def enable_logging(level: int = logging.INFO) -> None:
    """Progress lines on stderr (a notebook shows them); the command line does this too."""
    reporting.setup_logging(level)


def _read_json(path: str):
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def load(workdir: str) -> RunResult:
    """The results a workdir holds (reads only; a torn last log line is skipped)."""
    g = _read_json(os.path.join(workdir, "genotype.json"))
    magnitude = _read_json(os.path.join(workdir, "genotype_magnitude.json"))

    def records(name: str) -> list[dict]:
        path = os.path.join(workdir, name)
        return reporting.read_jsonl(path) if os.path.isfile(path) else []

    return RunResult(
        workdir=workdir,
        genotype=genotype_lib.from_json_dict(g["genotype"]) if g else None,
        genotype_method=g.get("method") if g else None,
        magnitude_genotype=genotype_lib.from_json_dict(magnitude["genotype"])
        if magnitude
        else None,
        evaluation=_read_json(os.path.join(workdir, "result.json")),
        summary=_read_json(os.path.join(workdir, "summary.json")),
        search_metrics=records("metrics.jsonl"),
        decisions=records("decisions.jsonl"),
        config=_read_json(os.path.join(workdir, "config.json")) or {},
        paths={
            n: os.path.join(workdir, n) for n in _FILES if os.path.exists(os.path.join(workdir, n))
        },  # fmt: skip
    )


def run(config, workdir: str, *, extend: bool = False, overwrite: bool = False,
        allow_backend_change: bool = False, log: bool = True) -> RunResult:  # fmt: skip
    """Runs the config's stages in `workdir` (or resumes them) and returns its results."""
    from nas_jax import pipeline

    if log:
        enable_logging()
    pipeline.run(config, workdir, extend=extend, overwrite=overwrite,
                 allow_backend_change=allow_backend_change)  # fmt: skip
    return load(workdir)


def _with(config, **changes):
    config = config.copy_and_resolve_references()
    for key, value in changes.items():
        config[key] = value
    return config


def run_search(config, workdir: str, **kwargs) -> RunResult:
    """The search stage alone (genotype: the magnitude read-out of the supernet)."""
    return run(_with(config, stages=("search",)), workdir, **kwargs)


def run_select(config, workdir: str, **kwargs) -> RunResult:
    """Search (resumed, or skipped when finished) and selection by `config.select`."""
    return run(_with(config, stages=("search", "select")), workdir, **kwargs)


def run_evaluate(config, workdir: str, genotype: str | None = None, **kwargs) -> RunResult:
    """Evaluates `genotype` (a registered name, a genotype.json path or a text form) or, by
    default, the workdir's genotype.json: NB201 lookup or retraining (`config.evaluate`)."""
    return run(_with(config, stages=("evaluate",), genotype=genotype or ""), workdir, **kwargs)
