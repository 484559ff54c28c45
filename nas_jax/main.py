r"""Entry point.

  python -m nas_jax.main --config configs/quickstart.py --workdir /tmp/nas_jax_quickstart
  python -m nas_jax.main --config configs/darts.py:space=s5,dataset=cifar10 --workdir W \
      --config.search.epochs=50
  python -m nas_jax.main --config configs/nb201.py --workdir W --config.num_seeds=4  # seeds
      0-3 in one program: W/seed_<k>/ (single-run workdirs) and W/summary.json

Config keys (--config.<section>.<key>=value): --print_config lists every key of a config
with its meaning and accepted values; --check validates a command without running it.
`python -m nas_jax.show W` prints what a workdir holds. (--helpfull adds the flags of jax
and absl, which a run does not need.)

Rerunning the same command on the same workdir resumes from the latest checkpoint; a
rerun with another config is refused unless --extend (more search or retraining epochs),
--overwrite or --allow_backend_change says otherwise (nas_jax/workdir.py).

Every anticipated failure ends with one `error:` line on stderr and exit status 2, with
the workdir left resumable: bad input (a config arg, key or value, a missing or malformed
dataset or genotype) before anything is written; a workdir that holds another run or is
in use; a log line that is not JSON before its last, or a verified checkpoint that does
not fit the config; a diverged training; a full disk. A damaged checkpoint is skipped
(moved to <workdir>/damaged_checkpoints/, with a warning) and the previous one used.
Anything else is a bug: one `error:` line summarising it, then the traceback.
"""

import errno
import logging
import os
import re
import sys
import threading

from absl import app, flags
from ml_collections import config_flags

from nas_jax import config_lib
from nas_jax.reporting import quiet_xla_logs

quiet_xla_logs()  # XLA's C++ log level: before anything imports jax (see its docstring)

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "A built-in config (quickstart, darts, nb201, evaluate) or a config file, "
    "with its args: quickstart:smoke, configs/darts.py:space=s5.")  # fmt: skip
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics, results.")
_EXTEND = flags.DEFINE_bool(
    "extend", False, "Continue a finished or running workdir with more search.epochs or "
    "evaluate.epochs (later stages are redone).")  # fmt: skip
_OVERWRITE = flags.DEFINE_bool(
    "overwrite", False, "Discard the run the workdir holds when its config differs."
)
_ALLOW_BACKEND = flags.DEFINE_bool(
    "allow_backend_change", False, "Continue a workdir's run on another backend (devices, "
    "jax version, kernel settings); config.json records the new one.")  # fmt: skip
_PRINT = flags.DEFINE_bool(
    "print_config", False, "Print the config (after its overrides) with each key's meaning "
    "and accepted values, and exit; runs nothing.")  # fmt: skip
_CHECK = flags.DEFINE_bool(
    "check",
    False,
    "Check the config, its inputs (datasets, genotype, table) and, with "
    "--workdir, what a run would do there; exit 0 when it would start (writes nothing).",
)
flags.mark_flags_as_required(["config"])


def _fail(message: str, code: int = 2):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def _last_line(text: str) -> str:
    """The last line of an error text that embeds a traceback, without the exception's
    class name."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    last = lines[-1] if lines else text
    return re.sub(r"^[\w.]+(Error|Exception): ", "", last)


def builtin_configs(argv: list[str]) -> list[str]:
    """`--config quickstart:smoke` (a built-in name, no file of that name here) -> the
    package's config file, so the built-in configs work without a clone."""
    from nas_jax import configs

    out, i = list(argv), 0
    while i < len(out):
        arg = out[i]
        if arg in ("--config", "-config") and i + 1 < len(out):
            i += 1
            value, prefix = out[i], ""
        elif arg.startswith("--config="):
            value, prefix = arg[len("--config=") :], "--config="
        else:
            i += 1
            continue
        name, sep, rest = value.partition(":")
        if name in configs.NAMES and not os.path.exists(name):
            out[i] = f"{prefix}{configs.path(name)}{sep}{rest}"
        i += 1
    return out


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, with config errors as one `error:` line (exit 2)."""
    argv = builtin_configs(argv)
    try:
        rest = flags.FLAGS(argv)
        _CONFIG.value.keys()  # a config file that failed to load raises here
        return rest
    except (AttributeError, KeyError) as e:  # an override of a key the config lacks
        text = str(e)
        key = re.search(r"'(\w+)", text)
        key = key.group(1) if key else text
        hint = re.search(r'Did you mean "(\w+)"', text)
        flag = [a.split("=")[0] for a in argv if re.match(rf"--config\.(.+\.)?{key}=", a)]
        where = f"{flag[0]}: " if flag else ""
        _fail(
            f"{where}unknown config key {key!r}"
            + (f"; did you mean {hint.group(1)!r}?" if hint else "")
        )
    except (flags.Error, OSError) as e:
        _fail(_last_line(str(e)))


def anticipated_errors() -> tuple[type[BaseException], ...]:
    """The failures a user can cause or meet (each a one-line message)."""
    from nas_jax import data, evaluation, reporting, workdir
    from nas_jax.checkpoint import CheckpointError
    from nas_jax.train.loop import NonFiniteError

    return (config_lib.ConfigError, evaluation.BenchmarkError, workdir.WorkdirError,
            NonFiniteError, data.DatasetNotPreparedError, data.DataError, CheckpointError,
            reporting.LogError)  # fmt: skip


_FULL_TEXT = re.compile(r"No space left on device|Disk quota exceeded|os_error_code='(28|122)'")


def _disk_full(e: BaseException) -> str | None:
    """What ran out of space behind `e` (libraries wrap ENOSPC: orbax's tensorstore raises
    `ValueError: RESOURCE_EXHAUSTED ... [os_error_code='28']`), as text, else None."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            where = f" ({e.filename})" if e.filename else ""
            return f"{where}: {e.strerror}"
        if _FULL_TEXT.search(str(e)):
            path = re.search(r'Error writing (?:local file )?"([^"]+)"', str(e))
            return f" ({path.group(1)})" if path else ""
        e = e.__cause__ or e.__context__
    return None


def _quiet_disk_full_threads() -> None:
    """Background writer threads (orbax) that hit a full disk log or print their own
    traceback; the main thread reports it in one line instead."""
    default = threading.excepthook

    def hook(args):
        if args.exc_value is None or _disk_full(args.exc_value) is None:
            default(args)

    threading.excepthook = hook

    def keep(record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        full = _FULL_TEXT.search(record.getMessage()) or (exc and _disk_full(exc) is not None)
        return not full

    for handler in logging.getLogger().handlers:
        handler.addFilter(keep)


def _exit_now(code: int) -> None:
    """Exits without the interpreter's shutdown: writer threads stuck on a full disk would
    print tracebacks there."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    # After flag parsing: --help stays fast.
    from nas_jax import pipeline, reporting

    reporting.setup_logging()
    _quiet_disk_full_threads()
    workdir = _WORKDIR.value
    options = dict(extend=_EXTEND.value, overwrite=_OVERWRITE.value,
                   allow_backend_change=_ALLOW_BACKEND.value)  # fmt: skip
    try:
        if _PRINT.value:
            from nas_jax import config_doc

            pipeline.normalize(_CONFIG.value)
            try:
                print(config_doc.describe(_CONFIG.value), flush=True)
            except BrokenPipeError:  # `| head`: the reader has what it wanted
                _exit_now(0)
        elif _CHECK.value:
            for line in pipeline.check(_CONFIG.value, workdir, **options):
                print(line)
        elif not workdir:
            _fail("--workdir is required (or --print_config / --check)")
        else:
            pipeline.run(_CONFIG.value, workdir, **options)
    except anticipated_errors() as e:
        _fail(one_line(e))
    except Exception as e:
        full = _disk_full(e)
        if full is not None:
            print(f"error: disk full{full.split(': ')[0]}: no space left on device; free space "
                  f"and rerun the same command: {workdir} resumes from its last checkpoint",
                  file=sys.stderr)  # fmt: skip
            _exit_now(2)
        print(f"error: unexpected {type(e).__name__} (a bug; the traceback follows): "
              f"{one_line(e)[:300]}", file=sys.stderr)  # fmt: skip
        raise


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
