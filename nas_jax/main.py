r"""Entry point.

  python -m nas_jax.main --config configs/quickstart.py --workdir /tmp/nas_jax_quickstart
  python -m nas_jax.main --config configs/darts.py:space=s5,dataset=cifar10 --workdir W \
      --config.search.epochs=50
  python -m nas_jax.main --config configs/nb201.py --workdir W --config.num_seeds=4  # seeds
      0-3 in one program: W/seed_<k>/ (single-run workdirs) and W/summary.json

Rerunning the same command on the same workdir resumes from the latest checkpoint.
"""

import sys

from absl import app, flags
from ml_collections import config_flags

from nas_jax import config_lib

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (configs/<x>.py[:arg]).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics, results.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from nas_jax import evaluation, kernels, pipeline, reporting  # after flag parsing: fast --help

    kernels.configure_allocator()  # before the first computation: XLA:CPU's buffers reused
    reporting.setup_logging()

    try:
        pipeline.validate(_CONFIG.value)
        pipeline.run(_CONFIG.value, _WORKDIR.value)
    except (config_lib.ConfigError, evaluation.BenchmarkError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main)
