"""The search stage: train a supernet with a bilevel method, checkpoint, resume.

Randomness: every step's key is fold_in(base key, step) and batches are a pure function
of (data key, step), so a resumed run repeats exactly what an uninterrupted one does.
"""

from __future__ import annotations

import math
import os
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from nas_jax import arch, data, genotype, precision, spaces, supernet
from nas_jax.checkpoint import Checkpointer
from nas_jax.reporting import MetricsWriter, Progress, logger
from nas_jax.search import methods, optim


class SearchData(NamedTuple):
    """Both halves of the search split, uint8 in device memory."""

    train_x: jax.Array
    train_y: jax.Array
    valid_x: jax.Array
    valid_y: jax.Array
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int


def dataset_kwargs(cfg_data) -> dict:
    """Keyword arguments of `data.load_dataset` from `config.data`."""
    kwargs = {"data_dir": os.path.expanduser(cfg_data.data_dir)}
    if cfg_data.name == "image_folder":
        kwargs["folder"] = cfg_data.folder
    return kwargs


def load_search_data(cfg_data) -> SearchData:
    ds = data.load_dataset(cfg_data.name, "train", **dataset_kwargs(cfg_data))
    train, valid = data.split_train_valid(ds, cfg_data.train_portion)
    return SearchData(
        *(jnp.asarray(a) for a in (train.images, train.labels, valid.images, valid.labels)),
        mean=tuple(ds.mean),
        std=tuple(ds.std),
        num_classes=ds.num_classes,
    )


class RunKeys(NamedTuple):
    """Fixed keys of a run; per-step keys are fold_in(key, step)."""

    init: jax.Array
    step: jax.Array
    train_data: jax.Array
    valid_data: jax.Array
    eval: jax.Array

    @classmethod
    def from_seed(cls, seed: int) -> RunKeys:
        return cls(*jax.random.split(jax.random.key(seed), 5))


class SearchSetup(NamedTuple):
    space: spaces.SearchSpace
    model: object
    weight_tx: optax.GradientTransformation
    arch_tx: optax.GradientTransformation
    schedule: optim.Schedule
    steps_per_epoch: int
    total_steps: int


def make_setup(config, search_data: SearchData) -> SearchSetup:
    space = spaces.get_space(config.model.space)
    model = supernet.build_supernet(
        space,
        C=config.model.C,
        layers=config.model.layers,
        num_classes=search_data.num_classes,
        nb201_cells=config.model.nb201_cells,
    )
    model = precision.with_compute_dtype(model, config.compute_dtype)
    s = config.search
    n_train = int(search_data.train_y.shape[0])
    spe = s.steps_per_epoch or data.steps_per_epoch(n_train, config.data.batch_size)
    schedule = optim.cosine_epoch_schedule(s.lr, s.lr_min, s.epochs, spe)
    weight_tx = optim.weight_optimizer(
        schedule, momentum=s.momentum, weight_decay=s.weight_decay, grad_clip=s.grad_clip
    )
    arch_tx = optim.arch_optimizer(
        s.arch_lr, s.arch_b1, s.arch_b2, weight_decay=s.arch_weight_decay
    )
    return SearchSetup(space, model, weight_tx, arch_tx, schedule, spe, spe * s.epochs)


def augment(key, images_uint8, cfg_data, mean, std, cutout_prob):
    return data.augment_batch(
        key,
        images_uint8,
        mean=mean,
        std=std,
        pad=cfg_data.pad,
        flip=cfg_data.flip,
        cutout_length=cfg_data.cutout_length,
        cutout_prob=cutout_prob,
    )


def method_options(s, schedule) -> dict:
    """The config keys each method takes (the step rejects options it does not use)."""
    if s.method in ("darts_2nd", "darts_2nd_fd"):
        return {"weight_lr": schedule}
    if s.method == "sdarts_rs":
        return {"noise": s.sdarts_noise}
    if s.method == "sdarts_adv":
        return {"pgd_steps": s.pgd_steps}
    if s.method == "fixed_alpha":
        return {"uniform": s.fixed_uniform}
    return {}


def make_train_step(setup: SearchSetup, config, mean, std):
    """Draws and augments both batches on device, then one bilevel step."""
    step_fn = methods.make_search_step(
        setup.model, config.search.method, weight_tx=setup.weight_tx, arch_tx=setup.arch_tx,
        **method_options(config.search, setup.schedule),
    )  # fmt: skip
    sampler = data.get_sampler(config.data.sampler)
    batch = config.data.batch_size

    def train_step(state, sd: SearchData, keys: RunKeys, epsilon, cutout_prob):
        k_aug_t, k_aug_v, k_step = jax.random.split(jax.random.fold_in(keys.step, state.step), 3)
        batches = []
        for k_data, k_aug, x, y in (
            (keys.train_data, k_aug_t, sd.train_x, sd.train_y),
            (keys.valid_data, k_aug_v, sd.valid_x, sd.valid_y),
        ):
            # The sampler folds the step into its (fixed) key itself.
            idx = sampler(k_data, state.step, num_examples=y.shape[0], batch_size=batch)
            xb, yb = data.gather_batch(x, y, idx)
            batches.append((augment(k_aug, xb, config.data, mean, std, cutout_prob), yb))
        return step_fn(state, batches[0], batches[1], k_step, epsilon)

    return train_step


def make_evaluate(setup: SearchSetup, config, mean, std):
    """Eval-mode (running statistics) loss/accuracy on un-augmented images."""
    model, batch = setup.model, config.data.batch_size

    @jax.jit
    def eval_batch(params, batch_stats, weights, x_uint8, y, mask, key):
        x = data.normalize(x_uint8, mean, std)
        logits = model.apply({"params": params, "batch_stats": batch_stats}, x, weights,
                             train=False, rngs={"noise": key})  # fmt: skip
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y)
        correct = (jnp.argmax(logits, -1) == y).astype(jnp.float32)
        return jnp.sum(loss * mask), jnp.sum(correct * mask)

    def evaluate(state, images, labels, key, max_batches=0):
        n = int(labels.shape[0])
        nb = math.ceil(n / batch)
        if max_batches:
            nb = min(nb, max_batches)
        weights = arch.mixing_weights(state.arch)
        loss_sum = correct_sum = 0.0
        count = 0
        for b in range(nb):
            idx = np.arange(b * batch, (b + 1) * batch)
            mask = (idx < n).astype(np.float32)
            idx = np.minimum(idx, n - 1)  # pad the last batch: same shape, no recompile
            k = jax.random.fold_in(key, b)
            loss_b, correct_b = eval_batch(
                state.params, state.batch_stats, weights, images[idx], labels[idx], mask, k
            )
            loss_sum, correct_sum = loss_sum + loss_b, correct_sum + correct_b
            count += int(mask.sum())
        return {"loss": float(loss_sum) / count, "acc": 100.0 * float(correct_sum) / count}

    return evaluate


def run_search(config, workdir: str, search_data: SearchData | None = None):
    """Runs (or resumes, or skips when finished) the search stage; returns the final
    state, the setup and the data."""
    search_data = search_data or load_search_data(config.data)
    setup = make_setup(config, search_data)
    s = config.search
    mean, std = search_data.mean, search_data.std
    keys = RunKeys.from_seed(config.seed)
    sample_x = jnp.zeros((2, *search_data.train_x.shape[1:]), jnp.float32)
    state = methods.create_search_state(
        setup.model, keys.init, sample_x, setup.space, setup.weight_tx, setup.arch_tx
    )
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"))
    if ckpt.latest_step() is not None:
        state, meta = ckpt.restore(state)
        logger.info("Resumed search from step %d (epoch %d)", int(state.step), meta["epoch"])
    start_step = int(state.step)
    start_epoch = start_step // setup.steps_per_epoch
    metrics = MetricsWriter(workdir)
    metrics.truncate_after("epoch", start_epoch)
    train_step = jax.jit(make_train_step(setup, config, mean, std), donate_argnums=0)
    evaluate = make_evaluate(setup, config, mean, std)
    progress = Progress("search", setup.total_steps, start_step, config.log_every_seconds)
    if start_step >= setup.total_steps:
        logger.info("Search already finished (%d steps); not redone.", setup.total_steps)
    step = start_step
    for epoch in range(start_epoch, s.epochs):
        t0 = time.time()
        epsilon, cutout_prob = epoch_inputs(config, epoch)
        sums = None
        for _ in range(setup.steps_per_epoch):
            state, step_metrics = train_step(state, search_data, keys, epsilon, cutout_prob)
            sums = step_metrics if sums is None else jax.tree.map(jnp.add, sums, step_metrics)
            step += 1
            progress.maybe_report(step, {"epoch": epoch})
        check_finite(sums, epoch, step)
        record = epoch_record(
            state, sums, epoch, epsilon, time.time() - t0,
            setup=setup, config=config, evaluate=evaluate, search_data=search_data, keys=keys,
        )  # fmt: skip
        metrics.write(int(state.step), record)
        report = {"epoch": epoch, "train_loss": record["train_loss"]}
        progress.maybe_report(step, {**report, "valid_acc": record["valid_eval_acc"]}, force=True)
        last = epoch + 1 == s.epochs
        if last or (epoch + 1) % s.checkpoint_every == 0:
            ckpt.save(int(state.step), state, {"epoch": epoch + 1, "stage": "search"})
    metrics.close()
    ckpt.close()
    return state, setup, search_data


def epoch_inputs(config, epoch: int) -> tuple[jax.Array, jax.Array]:
    """(SDARTS epsilon, cutout probability) of an epoch: both ramp over the search."""
    s = config.search
    epsilon = jnp.float32(s.epsilon_min + (s.epsilon_max - s.epsilon_min) * epoch / s.epochs)
    cutout_prob = jnp.float32(config.data.cutout_prob * epoch / max(s.epochs - 1, 1))
    return epsilon, cutout_prob


def epoch_record(state, sums, epoch: int, epsilon, seconds: float, *, setup: SearchSetup, config,
                 evaluate, search_data: SearchData, keys: RunKeys) -> dict:  # fmt: skip
    """The metrics.jsonl record of a finished epoch: step-metric means, eval-mode valid
    loss/accuracy, softmax(alpha) and the magnitude genotype."""
    record = {"epoch": epoch, "step": int(state.step), "seconds": seconds}
    for k, v in sums.items():  # epoch means; accuracies in percent like the reference
        record[k] = float(v) / setup.steps_per_epoch * (100.0 if k.endswith("_acc") else 1.0)
    record["lr"] = float(setup.schedule(epoch * setup.steps_per_epoch))
    record["epsilon"] = float(epsilon)
    ev = evaluate(state, search_data.valid_x, search_data.valid_y,
                  jax.random.fold_in(keys.eval, epoch), config.data.eval_batches)  # fmt: skip
    record.update({f"valid_eval_{k}": v for k, v in ev.items()})
    weights = arch.mixing_weights(state.arch)
    record["alphas_softmax"] = {t: np.asarray(w).round(5).tolist() for t, w in weights.items()}
    record["genotype"] = genotype.derive_genotype(setup.space, weights).to_text()
    return record


def check_finite(sums, epoch, step):
    bad = [k for k, v in sums.items() if not math.isfinite(float(v))]
    if bad:
        raise FloatingPointError(f"Non-finite {', '.join(bad)} in epoch {epoch} (by step {step})")
