"""The paper's analyses as tools, a registry (`ANALYSES`): each reads finished workdirs
and writes a JSON result and a figure into `<workdir>/analysis/<name>/`.

  python -m nas_jax.analysis <name> --workdir W [options]
  nas_jax.analysis.run("alpha_gap", "W", conv="sep_conv_3x3")

Built in (from the workdir's files alone, nothing is rerun):
  alpha_gap        Fig. 3: mean softmax(alpha) gap skip - conv per epoch vs valid accuracy
  selection_curve  Fig. 6: supernet valid accuracy along the selection, several workdirs
  report           report.md / report.html: config, curves, pictures, decisions, genotypes,
                   evaluation and every analysis already written

Adding one: a module that calls `ANALYSES.register(name, Analysis(name, compute, ...))`
(`base.py`), imported below or from the user's code before `run`.
"""

from nas_jax.analysis import alpha_gap, report, selection_curve  # noqa: F401  (registers)
from nas_jax.analysis.base import ANALYSES, Analysis, AnalysisError, Option, Output, run

__all__ = ["ANALYSES", "Analysis", "AnalysisError", "Option", "Output", "run"]
