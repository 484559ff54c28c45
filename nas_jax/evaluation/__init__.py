"""Evaluation of a selected architecture: NAS-Bench-201 lookup or retraining (SPEC 8)."""

from nas_jax.evaluation.lookup import BenchmarkError, arch_string, load_table
from nas_jax.evaluation.lookup import lookup as lookup_nb201
from nas_jax.evaluation.run import (
    METHODS,
    method_for_family,
    resolve_genotype,
    resolve_method,
    run_evaluate,
    summary,
    validate_config,
)

__all__ = [
    "METHODS",
    "BenchmarkError",
    "arch_string",
    "load_table",
    "lookup_nb201",
    "method_for_family",
    "resolve_genotype",
    "resolve_method",
    "run_evaluate",
    "summary",
    "validate_config",
]
