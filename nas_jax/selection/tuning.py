"""Progressive tuning between decisions (SPEC 7.5, 7.6).

The search step of the supernet's own method (alphas keep training unless fixed_alpha;
SDARTS perturbs undecided rows), with a fresh weight optimizer: SGD at search lr / 10,
constant as in the reference (its cosine scheduler is never stepped; 'cosine' is an
option), momentum and weight decay as in the search, clip 5. The Adam state of the
alphas is carried over. As in the reference, the train half is read in shuffled
passes ('epoch' sampler) and valid batches are i.i.d. draws.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from nas_jax import data
from nas_jax.search import loop, methods, optim

SCHEDULES = ("constant", "cosine")


class TuneKeys(NamedTuple):
    step: jax.Array
    train_data: jax.Array
    valid_data: jax.Array


def tune_optimizer(config, steps_per_epoch: int, total_epochs: int):
    """(weight_tx, schedule) of the tuning phase; the schedule counts tuning steps."""
    s, sel = config.search, config.select
    lr = s.lr * sel.tune_lr_factor
    if sel.tune_schedule == "cosine":
        schedule = optim.cosine_epoch_schedule(lr, s.lr_min, max(total_epochs, 1), steps_per_epoch)
    elif sel.tune_schedule == "constant":
        schedule = optim.constant_schedule(lr)
    else:
        raise ValueError(
            f"Unknown tune_schedule {sel.tune_schedule!r}; accepted: {', '.join(SCHEDULES)}"
        )
    tx = optim.weight_optimizer(
        schedule, momentum=s.momentum, weight_decay=s.weight_decay, grad_clip=s.grad_clip
    )
    return tx, schedule


def fresh_weight_optimizer(state: methods.SearchState, tx: optax.GradientTransformation):
    """New momentum buffers (and schedule count); params, alphas, Adam state kept."""
    return state._replace(opt_state=tx.init(state.params))


def make_tune_step(setup, config, tx, schedule, mean, std, start_step: int):
    """`tune_step(state, search_data, keys, epsilon, cutout_prob) -> (state, metrics)`.

    Tuning step i = state.step - start_step draws train batch i of the shuffled passes
    and an i.i.d. valid batch, all from `keys` folded with i: resumable exactly.
    """
    s = config.search
    shifted = lambda step: schedule(step - start_step)  # darts_2nd's xi follows tuning lr
    step_fn = methods.make_search_step(
        setup.model,
        s.method,
        weight_tx=tx,
        arch_tx=setup.arch_tx,
        **loop.method_options(s, shifted),
    )
    bs = config.data.batch_size

    def tune_step(state, sd: loop.SearchData, keys: TuneKeys, epsilon, cutout_prob):
        i = state.step - start_step
        k_aug_t, k_aug_v, k_step = jax.random.split(jax.random.fold_in(keys.step, i), 3)
        idx_t = data.epoch_batch_indices(
            keys.train_data, i, num_examples=sd.train_y.shape[0], batch_size=bs
        )
        idx_v = data.iid_batch_indices(
            keys.valid_data, i, num_examples=sd.valid_y.shape[0], batch_size=bs
        )
        batches = []
        for idx, k_aug, x, y in (
            (idx_t, k_aug_t, sd.train_x, sd.train_y),
            (idx_v, k_aug_v, sd.valid_x, sd.valid_y),
        ):
            xb, yb = data.gather_batch(x, y, idx)
            batches.append((loop.augment(k_aug, xb, config.data, mean, std, cutout_prob), yb))
        return step_fn(state, batches[0], batches[1], k_step, epsilon)

    return tune_step


def tune_epoch(tune_step, state, sd, keys: TuneKeys, steps: int, epsilon, cutout_prob):
    """`steps` tuning steps; returns the state and the epoch's mean metrics."""
    sums = None
    for _ in range(steps):
        state, m = tune_step(state, sd, keys, epsilon, cutout_prob)
        sums = m if sums is None else jax.tree.map(jnp.add, sums, m)
    means = {}
    for k, v in sums.items():
        v = float(v) / steps * (100.0 if k.endswith("_acc") else 1.0)
        if not math.isfinite(v):
            raise FloatingPointError(f"Non-finite {k} while tuning (by step {int(state.step)})")
        means[k] = v
    return state, means
