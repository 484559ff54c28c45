"""What every analysis shares: the registry, reading a workdir, and writing the outputs.

An `Analysis` reads finished workdirs and returns an `Output` (a JSON-able result, the
figures to draw, any text files) without writing anything; `write_output` then puts it
into `<workdir>/analysis/<name>/`, each file atomically. So an analysis that refuses its
input (`AnalysisError`, one line) leaves the workdir as it was.

Adding one: `ANALYSES.register(name, Analysis(name, compute, options=(Option(...), ...)))`
from any module; `python -m nas_jax.analysis <name> --workdir W` then runs it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from nas_jax import workdir as workdir_lib
from nas_jax.plots import save_png
from nas_jax.registry import Registry
from nas_jax.reporting import LogError, logger, read_jsonl, write_json
from nas_jax.selection.draw import have_matplotlib

ANALYSIS_DIR = workdir_lib.ANALYSIS_DIR  # removed when a stage of the workdir is redone


class AnalysisError(ValueError):
    """An input an analysis cannot use; the message is one line naming the bad value and
    what is accepted or missing."""


@dataclasses.dataclass(frozen=True)
class Option:
    """One command-line option of an analysis (`--name value`); `choices` limits it."""

    name: str
    type: Callable[[str], Any]
    default: Any
    help: str
    choices: Sequence[Any] | None = None
    nargs: str | None = None


@dataclasses.dataclass
class Output:
    """What an analysis writes: `result` -> `<name>.json`; `figures` maps a PNG file name to
    a function returning a matplotlib Figure (drawn only when matplotlib is installed);
    `texts` maps a file name to its text; `lines` are printed."""

    result: dict
    figures: dict[str, Callable[[], Any]] = dataclasses.field(default_factory=dict)
    texts: dict[str, str] = dataclasses.field(default_factory=dict)
    lines: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class Analysis:
    """`compute(workdir, **options) -> Output`, reading only; `options` its flags;
    `describe(result) -> lines`, the result in words (printed, and quoted by the report)."""

    name: str
    compute: Callable[..., Output]
    description: str = ""
    options: tuple[Option, ...] = ()
    describe: Callable[[dict], list[str]] | None = None


ANALYSES: Registry[Analysis] = Registry("analysis")


# ---------------------------------------------------------------------------- reading


def read_config(workdir: str) -> dict:
    """The workdir's config.json, or AnalysisError naming what is wrong."""
    if not os.path.isdir(workdir):
        raise AnalysisError(f"--workdir {workdir}: no such folder")
    try:
        record = workdir_lib.read_record(workdir)
    except workdir_lib.WorkdirError as e:
        raise AnalysisError(" ".join(str(e).split())) from None
    if record is None:
        raise AnalysisError(f"--workdir {workdir} is not a nas_jax workdir: it has no "
                            f"{workdir_lib.CONFIG_FILE}")  # fmt: skip
    return record


def sweep_members(workdir: str) -> list[str]:
    """The member folders (`seed_<k>`, in k order) of a sweep workdir; [] for a single run."""
    return [os.path.join(workdir, n) for n in workdir_lib.member_dirs(workdir)]


def read_log(workdir: str, name: str, needed_by: str) -> list[dict]:
    """The records of `<workdir>/<name>`; AnalysisError when it is missing or empty."""
    path = os.path.join(workdir, name)
    if not os.path.isfile(path):
        raise AnalysisError(f"{workdir} has no {name}, which {needed_by} needs")
    try:
        records = read_jsonl(path)
    except LogError as e:
        raise AnalysisError(str(e)) from None
    if not records:
        raise AnalysisError(f"{path} holds no records, which {needed_by} needs")
    return records


def label(workdir: str, config: Mapping) -> str:
    """A short name for a run in legends: its folder and selection method."""
    method = config.get("select", {}).get("method", "?")
    return f"{os.path.basename(os.path.normpath(workdir))} ({method})"


# ---------------------------------------------------------------------------- writing


def output_dir(workdir: str, name: str) -> str:
    return os.path.join(workdir, ANALYSIS_DIR, name)


def write_text(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def write_output(name: str, workdir: str, out: Output) -> list[str]:
    """Writes `out` into `<workdir>/analysis/<name>/`; returns the paths written. The JSON
    comes last, so its presence says the rest is complete."""
    folder = output_dir(workdir, name)
    os.makedirs(folder, exist_ok=True)
    paths = []
    if out.figures and not have_matplotlib():
        logger.info("No %s figure: it needs matplotlib (pip install 'nas_jax[plots]')", name)
    elif out.figures:
        for file_name, draw in out.figures.items():
            path = os.path.join(folder, file_name)
            save_png(draw(), path)
            paths.append(path)
    for file_name, text in out.texts.items():
        path = os.path.join(folder, file_name)
        write_text(path, text)
        paths.append(path)
    path = os.path.join(folder, f"{name}.json")
    write_json(path, out.result)
    return [*paths, path]


def run(name: str, workdir: str, **options) -> tuple[Output, list[str]]:
    """Computes the analysis `name` on `workdir` and writes it; returns the output and the
    paths written. Raises AnalysisError (or UnknownNameError) before writing anything."""
    analysis = ANALYSES.get(name)
    known = {o.name for o in analysis.options}
    unknown = sorted(set(options) - known)
    if unknown:
        raise AnalysisError(f"{name} has no option {unknown[0]!r}; accepted: "
                            f"{', '.join(sorted(known)) or 'none'}")  # fmt: skip
    for o in analysis.options:
        if o.choices is not None and o.name in options and options[o.name] not in o.choices:
            raise AnalysisError(f"--{o.name} {options[o.name]!r}: accepted: "
                                f"{', '.join(map(str, o.choices))}")  # fmt: skip
    values = {o.name: o.default for o in analysis.options} | options
    out = analysis.compute(workdir, **values)
    return out, write_output(name, workdir, out)
