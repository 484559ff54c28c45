"""The search stage: train a supernet with a bilevel method, checkpoint, resume.

state, setup, search_data = run_search(config, workdir)

The epochs run in `train.loop.EpochLoop`; this module supplies the search's step (both
batches drawn and augmented on device, then one step of the configured method), its
per-epoch inputs (the SDARTS radius and the cutout probability ramp over the epochs) and
its epoch record (step-metric means, eval-mode valid loss/accuracy, softmax(alpha), the
magnitude genotype). With `seeds=K` the same stage runs K seeds in one vmapped program
(`nas_jax.sweep`).

Randomness: every step's key is fold_in(base key, step) and batches are a pure function
of (data key, step), so a resumed run repeats exactly what an uninterrupted one does.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from nas_jax import arch, data, genotype, precision, spaces, supernet
from nas_jax.checkpoint import Checkpointer
from nas_jax.reporting import MetricsWriter, Progress, logger
from nas_jax.search import methods, optim, perturb
from nas_jax.train import evaluate as evaluate_lib
from nas_jax.train import loop as loop_lib


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
    if data.DATASETS.get(cfg_data.name).needs_folder:
        kwargs.update(folder=cfg_data.folder, cache_dir=cfg_data.cache_dir)
    return kwargs


def search_data_from(ds: data.Dataset, cfg_data) -> SearchData:
    """The search split (SPEC 6.1) of a loaded train split, in device memory."""
    train, valid = data.split_train_valid(ds, cfg_data.train_portion)
    return SearchData(
        *(jnp.asarray(a) for a in (train.images, train.labels, valid.images, valid.labels)),
        mean=tuple(ds.mean),
        std=tuple(ds.std),
        num_classes=ds.num_classes,
    )


def load_search_data(cfg_data) -> SearchData:
    ds = data.load_dataset(cfg_data.name, "train", **dataset_kwargs(cfg_data))
    return search_data_from(ds, cfg_data)


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


def create_state(setup: SearchSetup, keys: RunKeys, search_data: SearchData):
    """A fresh search state of the run with these keys."""
    sample_x = jnp.zeros((2, *search_data.train_x.shape[1:]), jnp.float32)
    return methods.create_search_state(
        setup.model, keys.init, sample_x, setup.space, setup.weight_tx, setup.arch_tx
    )


def draw_batch(key_aug, x_N, y_N, indices, cfg_data, mean, std, cutout_prob):
    """The batch at `indices` (a sampler's draw), augmented on device."""
    xb, yb = data.gather_batch(x_N, y_N, indices)
    x = data.augment_batch(
        key_aug, xb, mean=mean, std=std, pad=cfg_data.pad, flip=cfg_data.flip,
        cutout_length=cfg_data.cutout_length, cutout_prob=cutout_prob,
    )  # fmt: skip
    return x, yb


def make_step_fn(setup: SearchSetup, config, weight_tx, lr_schedule):
    """The configured method's step with these optimizer and schedule (the search's, or
    PT tuning's)."""
    return methods.make_search_step(
        setup.model, config.search.method, weight_tx=weight_tx, arch_tx=setup.arch_tx,
        **methods.options_from_config(config.search, lr_schedule),
    )  # fmt: skip


def make_train_step(setup: SearchSetup, config, mean, std):
    """`train_step(state, keys, search_data, inputs) -> (state, metrics)`: draws and
    augments both batches on device, then one bilevel step. `inputs`: the epoch's
    `epsilon` (SDARTS radius) and `cutout_prob`."""
    step_fn = make_step_fn(setup, config, setup.weight_tx, setup.schedule)
    sampler = data.get_sampler(config.data.sampler)
    batch = config.data.batch_size

    def train_step(state, keys: RunKeys, sd: SearchData, inputs):
        k_aug_t, k_aug_v, k_step = jax.random.split(jax.random.fold_in(keys.step, state.step), 3)
        batches = []
        for k_data, k_aug, x, y in (
            (keys.train_data, k_aug_t, sd.train_x, sd.train_y),
            (keys.valid_data, k_aug_v, sd.valid_x, sd.valid_y),
        ):
            # The sampler folds the step into its (fixed) key itself.
            idx = sampler(k_data, state.step, num_examples=y.shape[0], batch_size=batch)
            batches.append(
                draw_batch(k_aug, x, y, idx, config.data, mean, std, inputs["cutout_prob"])
            )
        return step_fn(state, batches[0], batches[1], k_step, inputs["epsilon"])

    return train_step


def make_evaluate(setup: SearchSetup, config, mean, std):
    """`evaluate(state, images, labels, key, max_batches=0) -> {'loss', 'acc'}`: eval mode
    (running statistics), un-augmented images, the state's mixing weights."""
    model = setup.model
    mixing = methods.mixing_from_config(config.search, setup.schedule)

    def logits(args, x, key):
        params, batch_stats, weights = args
        return model.apply({"params": params, "batch_stats": batch_stats}, x, weights,
                           train=False, rngs={"noise": key})  # fmt: skip

    evaluator = evaluate_lib.make_evaluator(logits, config.data.batch_size, mean, std)

    def evaluate(state, images, labels, key, max_batches=0):
        args = (state.params, state.batch_stats, mixing(state.arch))
        out = evaluator(args, images, labels, key, max_batches)
        return {"loss": out["loss"], "acc": out["acc"]}

    return evaluate


class SearchStage:
    """The search as a `train.loop.Stage`: one run, or K seeds (`member_keys`)."""

    name = "search"

    def __init__(self, config, setup: SearchSetup, search_data: SearchData,
                 member_keys: Sequence[RunKeys]):  # fmt: skip
        self.config, self.setup, self.search_data = config, setup, search_data
        self.member_keys = list(member_keys)
        self.steps_per_epoch = setup.steps_per_epoch
        self.step = make_train_step(setup, config, search_data.mean, search_data.std)
        self.evaluate = make_evaluate(setup, config, search_data.mean, search_data.std)
        self.perturbs = methods.get_method(config.search.method).perturb is not None
        self.divergence = ("train_loss", config.get("divergence_factor", 0.0))

    def epoch_inputs(self, epoch: int) -> dict:
        s = self.config.search
        epsilon = perturb.sdarts_epsilon(epoch, s.epochs, s.epsilon_max, s.epsilon_min)
        cutout_prob = self.config.data.cutout_prob * epoch / max(s.epochs - 1, 1)
        return {"epsilon": jnp.float32(epsilon), "cutout_prob": jnp.float32(cutout_prob)}

    def epoch_record(self, state, sums, epoch: int, seconds: float, member: int) -> dict:
        """Step-metric means, eval-mode valid loss/accuracy, softmax(alpha) and the
        magnitude genotype."""
        setup, sd = self.setup, self.search_data
        record = {"epoch": epoch, "step": int(state.step), "seconds": seconds}
        record.update(loop_lib.epoch_means(sums, setup.steps_per_epoch))
        record["lr"] = float(setup.schedule(epoch * setup.steps_per_epoch))
        if self.perturbs:
            record["epsilon"] = float(self.epoch_inputs(epoch)["epsilon"])
        key = jax.random.fold_in(self.member_keys[member].eval, epoch)
        ev = self.evaluate(state, sd.valid_x, sd.valid_y, key, self.config.data.eval_batches)
        record.update({f"valid_eval_{k}": v for k, v in ev.items()})
        weights = arch.mixing_weights(state.arch)
        record["alphas_softmax"] = named_alphas(setup.space, weights)
        record["genotype"] = genotype.derive_genotype(setup.space, weights).to_text()
        return record

    def progress_fields(self, records) -> dict:
        accs = [r["valid_eval_acc"] for r in records]
        if len(records) == 1:
            return {"train_loss": records[0]["train_loss"], "valid_eval_acc": accs[0]}
        return {"valid_eval_acc_mean": float(np.mean(accs)), "valid_eval_acc_min": min(accs)}

    def checkpoint_due(self, epoch: int) -> bool:
        s = self.config.search
        return epoch + 1 == s.epochs or (epoch + 1) % s.checkpoint_every == 0

    def checkpoint_meta(self, epoch: int, member: int) -> dict:
        return {"epoch": epoch + 1, "stage": "search"}


def named_alphas(space: spaces.SearchSpace, weights) -> dict:
    """softmax(alpha) as metrics.jsonl records it: {cell type: {edge name: {op: weight}}}
    (edge names `SearchSpace.edge_name`, in edge-id order; ops in alpha-column order),
    rounded to 5 decimals."""
    out = {}
    for t, w in weights.items():
        rows = np.asarray(w, np.float64).round(5).tolist()
        out[t] = {
            space.edge_name(e): dict(zip(space.edge_ops(t, e), row, strict=True))
            for e, row in enumerate(rows)
        }
    return out


def alpha_images(config, space: spaces.SearchSpace):
    """The TensorBoard picture of each search record (`plots.tensorboard_images`)."""
    from nas_jax import plots  # matplotlib is optional and loaded only when drawing

    return plots.tensorboard_images(space, f"{config.search.method} search")


def run_search(config, workdir: str, search_data: SearchData | None = None):
    """Runs (or resumes, or skips when finished) the search stage; returns the final
    state, the setup and the data."""
    search_data = search_data or load_search_data(config.data)
    setup = make_setup(config, search_data)
    keys = RunKeys.from_seed(config.seed)
    state = create_state(setup, keys, search_data)
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"))
    restored = ckpt.restore_latest(state)
    if restored is not None:
        state, meta = restored
        logger.info("Resumed search from step %d (epoch %d)", int(state.step), meta["epoch"])
    start_step = int(state.step)
    start_epoch = start_step // setup.steps_per_epoch
    metrics = MetricsWriter(workdir, images=alpha_images(config, setup.space))
    metrics.truncate_after("epoch", start_epoch)
    progress = Progress("search", setup.total_steps, start_step, config.log_every_seconds)
    if start_step >= setup.total_steps:
        logger.info("Search already finished (%d steps); not redone.", setup.total_steps)
    stage = SearchStage(config, setup, search_data, [keys])
    loop = loop_lib.EpochLoop(stage, keys=keys, shared=search_data, progress=progress,
                              runs=[loop_lib.RunFiles(metrics, ckpt)])  # fmt: skip
    try:
        state = loop.run(state, range(start_epoch, config.search.epochs))
    finally:
        metrics.close()
        ckpt.close()
    return state, setup, search_data
