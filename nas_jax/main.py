r"""Entry point.

  python -m nas_jax.main --config configs/quickstart.py --workdir /tmp/nas_jax_quickstart
  python -m nas_jax.main --config configs/darts.py:space=s5,dataset=cifar10 --workdir W \
      --config.search.epochs=50
  python -m nas_jax.main --config configs/nb201.py --workdir W --config.num_seeds=4  # seeds
      0-3 in one program: W/seed_<k>/ (single-run workdirs) and W/summary.json

Rerunning the same command on the same workdir resumes from the latest checkpoint; a
rerun with another config is refused unless --extend (more search or retraining epochs),
--overwrite or --allow_backend_change says otherwise (nas_jax/workdir.py).

Every anticipated failure ends with one `error:` line on stderr and exit status 2, with
the workdir left resumable: bad input (a config arg, key or value, a missing or malformed
dataset or genotype) before anything is written; a workdir that holds another run or is
in use; damaged checkpoints or logs; a diverged training; a full disk. Anything else is a
bug: one `error:` line summarising it, then the traceback.
"""

import errno
import re
import sys

from absl import app, flags
from ml_collections import config_flags

from nas_jax import config_lib

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (configs/<x>.py[:arg]).")
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
flags.mark_flags_as_required(["config", "workdir"])


def _fail(message: str, code: int = 2):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def _last_line(text: str) -> str:
    """The last line of an error text that embeds a traceback, without the exception's
    class name."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    last = lines[-1] if lines else text
    return re.sub(r"^[\w.]+(Error|Exception): ", "", last)


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, with config errors as one `error:` line (exit 2)."""
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
    from nas_jax import data, evaluation, workdir
    from nas_jax.train.loop import NonFiniteError

    return (config_lib.ConfigError, evaluation.BenchmarkError, workdir.WorkdirError,
            NonFiniteError, data.DatasetNotPreparedError)  # fmt: skip


def _disk_full(e: BaseException) -> OSError | None:
    """The ENOSPC/EDQUOT error behind `e` (libraries wrap it), if any."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return e
        e = e.__cause__ or e.__context__
    return None


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    # After flag parsing: --help stays fast.
    from nas_jax import pipeline, reporting

    reporting.setup_logging()
    workdir = _WORKDIR.value
    try:
        pipeline.run(_CONFIG.value, workdir, extend=_EXTEND.value, overwrite=_OVERWRITE.value,
                     allow_backend_change=_ALLOW_BACKEND.value)  # fmt: skip
    except anticipated_errors() as e:
        _fail(one_line(e))
    except Exception as e:
        full = _disk_full(e)
        if full is not None:
            where = f" ({full.filename})" if full.filename else ""
            _fail(f"disk full{where}: {full.strerror}; free space and rerun the same command: "
                  f"{workdir} resumes from its last checkpoint")  # fmt: skip
        print(f"error: unexpected {type(e).__name__} (a bug; the traceback follows): "
              f"{one_line(e)[:300]}", file=sys.stderr)  # fmt: skip
        raise


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
