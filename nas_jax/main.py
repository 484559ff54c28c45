r"""Entry point.

  python -m nas_jax.main --config configs/quickstart.py --workdir /tmp/nas_jax_quickstart
  python -m nas_jax.main --config configs/darts.py:space=s5,dataset=cifar10 --workdir W \
      --config.search.epochs=50
  python -m nas_jax.main --config configs/nb201.py --workdir W --config.num_seeds=4  # seeds
      0-3 in one program: W/seed_<k>/ (single-run workdirs) and W/summary.json

Rerunning the same command on the same workdir resumes from the latest checkpoint.
Bad input (a config arg, key or value, a missing dataset or genotype) ends with one
`error:` line and exit status 2 before anything is written; a run whose training
diverges (a NaN or infinite loss) ends with one line and exit status 1. A damaged
checkpoint is skipped (moved to <workdir>/damaged_checkpoints/, with a warning) and the
previous one used; a workdir that cannot be resumed as it is (a log line that is not JSON
before its last, a verified checkpoint that does not fit the config) ends with one line
naming the file and exit status 2.
"""

import re
import sys

from absl import app, flags
from ml_collections import config_flags

from nas_jax import config_lib

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (configs/<x>.py[:arg]).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics, results.")
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


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    # After flag parsing: --help stays fast.
    from nas_jax import evaluation, pipeline, reporting
    from nas_jax.checkpoint import CheckpointError
    from nas_jax.train.loop import NonFiniteError

    reporting.setup_logging()
    try:
        pipeline.run(_CONFIG.value, _WORKDIR.value)
    except (config_lib.ConfigError, evaluation.BenchmarkError) as e:
        _fail(str(e))
    except (CheckpointError, reporting.LogError) as e:  # a workdir that needs a hand
        _fail(str(e))
    except NonFiniteError as e:
        _fail(str(e), code=1)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
