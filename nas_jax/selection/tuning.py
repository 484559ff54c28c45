"""Progressive tuning between decisions (SPEC 7.5, 7.6), as a `train.loop.Stage`.

The search step of the supernet's own method (alphas keep training unless fixed_alpha;
SDARTS perturbs undecided rows), with a fresh weight optimizer: SGD at search lr / 10,
constant as in the reference (its cosine scheduler is never stepped; 'cosine' is an
option), momentum and weight decay as in the search, clip 5. The Adam state of the
alphas is carried over. As in the reference, the train half is read in shuffled
passes ('epoch' sampler) and valid batches are i.i.d. draws. The SDARTS radius is held
at its final value and the cutout probability at its configured one.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from nas_jax import data
from nas_jax.search import methods, optim
from nas_jax.search import run as search_run
from nas_jax.train import loop as loop_lib

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
    """`tune_step(state, keys, search_data, inputs) -> (state, metrics)`.

    Tuning step i = state.step - start_step draws train batch i of the shuffled passes
    and an i.i.d. valid batch, all from `keys` folded with i: resumable exactly.
    """
    shifted = lambda step: schedule(step - start_step)  # darts_2nd's xi follows tuning lr
    step_fn = search_run.make_step_fn(setup, config, tx, shifted)
    bs = config.data.batch_size

    def tune_step(state, keys: TuneKeys, sd: search_run.SearchData, inputs):
        i = state.step - start_step
        k_aug_t, k_aug_v, k_step = jax.random.split(jax.random.fold_in(keys.step, i), 3)
        idx_t = data.epoch_batch_indices(
            keys.train_data, i, num_examples=sd.train_y.shape[0], batch_size=bs
        )
        idx_v = data.iid_batch_indices(
            keys.valid_data, i, num_examples=sd.valid_y.shape[0], batch_size=bs
        )
        cutout_prob = inputs["cutout_prob"]
        train = search_run.draw_batch(k_aug_t, sd.train_x, sd.train_y, idx_t, config.data, mean,
                                      std, cutout_prob)  # fmt: skip
        valid = search_run.draw_batch(k_aug_v, sd.valid_x, sd.valid_y, idx_v, config.data, mean,
                                      std, cutout_prob)  # fmt: skip
        return step_fn(state, train, valid, k_step, inputs["epsilon"])

    return tune_step


class TuneStage:
    """PT tuning as a `train.loop.Stage`: epochs are the tuning phase's (0-based over all
    events); `event` is set by the selection before each event's epochs."""

    name = "select"

    def __init__(self, setup, config, tx, schedule, mean, std, start_step: int, step_fn=None):
        self.steps_per_epoch = setup.steps_per_epoch
        self.schedule = schedule
        self.step = step_fn or make_tune_step(setup, config, tx, schedule, mean, std, start_step)
        # Held during projection (SPEC 6.5): the radius at its maximum.
        self.inputs = {"epsilon": jnp.float32(config.search.epsilon_max),
                       "cutout_prob": jnp.float32(config.data.cutout_prob)}  # fmt: skip
        self.event = 0

    def epoch_inputs(self, epoch: int) -> dict:
        return self.inputs

    def epoch_record(self, state, sums, epoch: int, seconds: float, member: int) -> dict:
        record = loop_lib.epoch_means(sums, self.steps_per_epoch)
        record.update(event=self.event, epoch=epoch)
        record["lr"] = float(self.schedule(epoch * self.steps_per_epoch))
        return record

    def progress_fields(self, records) -> dict:
        return {"train_loss": records[0]["train_loss"]}

    def checkpoint_due(self, epoch: int) -> bool:
        return False  # the selection checkpoints after each decision event

    def checkpoint_meta(self, epoch: int, member: int) -> dict:
        return {"event": self.event, "stage": "select"}
