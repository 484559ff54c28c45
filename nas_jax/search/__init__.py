"""Bilevel supernet training: optimizers, the search methods, SDARTS perturbations.

weight_tx = weight_optimizer(cosine_epoch_schedule(0.025, 0.001, epochs, steps_per_epoch))
arch_tx = arch_optimizer()
state = create_search_state(model, key, x_BxHxWxC, space, weight_tx, arch_tx)
step = jax.jit(make_search_step(model, 'darts', weight_tx=weight_tx, arch_tx=arch_tx),
               donate_argnums=0)
state, metrics = step(state, train_batch, valid_batch, fold_in(key, i), sdarts_epsilon(e, epochs))
"""

from nas_jax.search.methods import (
    METHODS,
    REQUIRED,
    SearchMethod,
    SearchState,
    create_search_state,
    cross_entropy,
    get_method,
    make_forward,
    make_search_step,
    register,
)
from nas_jax.search.optim import (
    arch_optimizer,
    constant_schedule,
    cosine_epoch_schedule,
    weight_optimizer,
)
from nas_jax.search.perturb import (
    clip_probs,
    perturbable_rows,
    pgd_linf,
    random_smoothing,
    sdarts_epsilon,
)

__all__ = [
    "METHODS",
    "REQUIRED",
    "SearchMethod",
    "SearchState",
    "arch_optimizer",
    "clip_probs",
    "constant_schedule",
    "cosine_epoch_schedule",
    "create_search_state",
    "cross_entropy",
    "get_method",
    "make_forward",
    "make_search_step",
    "perturbable_rows",
    "pgd_linf",
    "random_smoothing",
    "register",
    "sdarts_epsilon",
    "weight_optimizer",
]
