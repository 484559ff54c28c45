"""Retraining a discrete architecture from scratch (SPEC 8.1-8.3) and testing it.

The machinery of the search stage (`train.loop`): the whole train/test split in device
memory, batches drawn on device by index as a pure function of (key, step), on-device
augmentation (crop, flip, cutout), per-step keys fold_in(key, step), orbax checkpoints
every few epochs, so a resumed run repeats an uninterrupted one exactly.

Reference behaviour kept: auxiliary loss weight 0.4 at train time only, drop-path
probability ramped linearly p_e = p * e / epochs and applied to every op except the
stride-1 identity, cosine lr stepped per epoch, gradient clipping over all weights
(aux head included), test in eval mode (running BN statistics) on the test split.
Deviation: the reference's last batch of an epoch is smaller (50,000 = 520 * 96 + 80);
here it keeps its shape and is topped up with indices of the epoch's first batch,
which are masked out of the loss (they still enter the BN batch statistics).
"""

from __future__ import annotations

import json
import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from nas_jax import config_lib, data, families, networks, precision
from nas_jax.checkpoint import Checkpointer
from nas_jax.genotype import AnyGenotype, save_json
from nas_jax.init import init_variables
from nas_jax.reporting import MetricsWriter, Progress, logger
from nas_jax.search import optim
from nas_jax.search import run as search_run
from nas_jax.train import evaluate as evaluate_lib
from nas_jax.train import loop as loop_lib

_KEY_TAG = 0xE7A1  # separates retraining's random streams from the search's


class EvalData(NamedTuple):
    """Train and test splits, uint8 in device memory."""

    train_x: jax.Array
    train_y: jax.Array
    test_x: jax.Array
    test_y: jax.Array
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int


def eval_data_from(train: data.Dataset, test: data.Dataset) -> EvalData:
    """Loaded train and test splits in device memory (normalised with train's mean/std)."""
    arrays = (train.images, train.labels, test.images, test.labels)
    return EvalData(*(jnp.asarray(a) for a in arrays), mean=tuple(train.mean),
                    std=tuple(train.std), num_classes=train.num_classes)  # fmt: skip


def load_eval_data(cfg_data) -> EvalData:
    kwargs = search_run.dataset_kwargs(cfg_data)
    train = data.load_dataset(cfg_data.name, "train", **kwargs)
    return eval_data_from(train, data.load_dataset(cfg_data.name, "test", **kwargs))


class RetrainKeys(NamedTuple):
    init: jax.Array
    step: jax.Array
    data: jax.Array
    eval: jax.Array

    @classmethod
    def from_seed(cls, seed: int) -> RetrainKeys:
        return cls(*jax.random.split(jax.random.fold_in(jax.random.key(seed), _KEY_TAG), 4))


class TrainState(NamedTuple):
    step: jax.Array
    params: dict
    batch_stats: dict
    opt_state: optax.OptState


def build_network(genotype: AnyGenotype, ev, num_classes: int):
    """The discrete network of `genotype` at the size `ev` (config.evaluate) asks for."""
    fam = families.family_of(genotype)
    C, layers = fam.network_size(ev)
    return fam.build_network(genotype, C=C, layers=layers, num_classes=num_classes,
                             auxiliary=ev.auxiliary, imagenet=ev.imagenet)  # fmt: skip


def count_params(params) -> tuple[int, int]:
    """(without the auxiliary head, total): the reference's "param size" drops names
    containing 'auxiliary' (SPEC 11)."""
    total = networks.count_params(params)
    return total - networks.count_params(params.get("auxiliary", {})), total


def make_schedule(ev, steps_per_epoch: int) -> optim.Schedule:
    if ev.lr_schedule == "cosine":
        return optim.cosine_epoch_schedule(ev.lr, ev.lr_min, ev.epochs, steps_per_epoch)
    # 'exponential': torch StepLR(step_size=1, gamma) stepped per epoch (ImageNet, SPEC 8.3)
    return lambda count: ev.lr * ev.lr_gamma ** (jnp.asarray(count) // steps_per_epoch)


def create_state(model, key, sample_x, tx) -> TrainState:
    # train=True so that the auxiliary head (built only in training) gets parameters.
    variables = init_variables(model, key, sample_x, train=True)
    params = variables["params"]
    return TrainState(jnp.zeros((), jnp.int32), params, variables.get("batch_stats", {}),
                      tx.init(params))  # fmt: skip


def _claim_checkpoints(ckpt_dir: str, g: AnyGenotype) -> None:
    """Records which genotype the checkpoints belong to; refuses to resume another's."""
    path = os.path.join(ckpt_dir, "genotype.json")
    if os.path.isfile(path):
        with open(path) as f:
            previous = json.load(f)["text"]
        if previous != g.to_text():
            raise config_lib.ConfigError(
                f"{ckpt_dir} holds a retraining of another genotype ({previous}); "
                "use a fresh workdir"
            )
        return
    os.makedirs(ckpt_dir, exist_ok=True)
    save_json(g, path)


def make_train_step(model, tx, ev, cfg_data, mean, std, num_train: int):
    """`train_step(state, keys, (x_all, y_all), inputs) -> (state, metrics)`; `inputs`:
    the epoch's `drop_path_prob` (None = off). Metrics are sums over the batch's real
    examples (the top-up of an epoch's last batch is masked out)."""
    sampler = data.get_sampler(ev.sampler)
    batch = ev.batch_size

    def train_step(state: TrainState, keys: RetrainKeys, split, inputs):
        x_all, y_all = split
        drop_path_prob = inputs["drop_path_prob"]
        k_aug, k_drop, k_noise = jax.random.split(jax.random.fold_in(keys.step, state.step), 3)
        idx = sampler(keys.data, state.step, num_examples=num_train, batch_size=batch)
        if ev.sampler == "epoch":
            mask = data.epoch_batch_mask(state.step, num_examples=num_train, batch_size=batch)
            mask = mask.astype(jnp.float32)
        else:
            mask = jnp.ones((batch,), jnp.float32)
        xb, yb = data.gather_batch(x_all, y_all, idx)
        xb = data.augment_batch(k_aug, xb, mean=mean, std=std, pad=cfg_data.pad,
                                flip=cfg_data.flip, cutout_length=ev.cutout_length,
                                cutout_prob=ev.cutout_prob)  # fmt: skip
        targets = jax.nn.one_hot(yb, model.num_classes)
        if ev.label_smoothing:
            targets = optax.smooth_labels(targets, ev.label_smoothing)

        def loss_fn(params):
            (logits, logits_aux), new_vars = model.apply(
                {"params": params, "batch_stats": state.batch_stats}, xb, train=True,
                drop_path_prob=drop_path_prob, rngs={"dropout": k_drop, "noise": k_noise},
                mutable=["batch_stats"],
            )  # fmt: skip
            count = jnp.sum(mask)
            loss = jnp.sum(optax.softmax_cross_entropy(logits, targets) * mask) / count
            if logits_aux is not None:
                aux = jnp.sum(optax.softmax_cross_entropy(logits_aux, targets) * mask) / count
                loss = loss + ev.auxiliary_weight * aux
            return loss, (new_vars["batch_stats"], logits)

        (loss, (batch_stats, logits)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params
        )
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        correct = jnp.sum((jnp.argmax(logits, -1) == yb) * mask)
        metrics = {"train_loss_sum": loss * jnp.sum(mask), "train_correct": correct,
                   "train_count": jnp.sum(mask)}  # fmt: skip
        return TrainState(state.step + 1, params, batch_stats, opt_state), metrics

    return train_step


def make_evaluate(model, batch: int, mean, std):
    """`evaluate(state, images, labels, key, max_batches=0) -> {'loss', 'acc', 'examples'}`:
    eval mode (running statistics), un-augmented images."""

    def logits(args, x, key):
        params, batch_stats = args
        return model.apply({"params": params, "batch_stats": batch_stats}, x, train=False,
                           rngs={"noise": key})[0]  # fmt: skip

    evaluator = evaluate_lib.make_evaluator(logits, batch, mean, std)

    def evaluate(state, images, labels, key, max_batches=0):
        return evaluator((state.params, state.batch_stats), images, labels, key, max_batches)

    return evaluate


class RetrainStage:
    """Retraining as a `train.loop.Stage`. `meta` (restored from and saved with the
    checkpoints) carries the epoch, the latest and the best test numbers and the
    training time."""

    name = "retrain"

    def __init__(self, config, model, tx, schedule, d: EvalData, keys: RetrainKeys,
                 steps_per_epoch: int, meta: dict):  # fmt: skip
        self.ev, self.d, self.keys, self.meta = config.evaluate, d, keys, meta
        self.schedule, self.steps_per_epoch = schedule, steps_per_epoch
        num_train = int(d.train_y.shape[0])
        self.step = make_train_step(model, tx, self.ev, config.data, d.mean, d.std, num_train)
        self.evaluate = make_evaluate(model, self.ev.batch_size, d.mean, d.std)
        self.divergence = ("train_loss", config.get("divergence_factor", 0.0))

    def epoch_inputs(self, epoch: int) -> dict:
        ev = self.ev  # drop-path ramps linearly over the epochs (SPEC 8.1)
        return {"drop_path_prob": jnp.float32(ev.drop_path_prob * epoch / ev.epochs)
                if ev.drop_path_prob else None}  # fmt: skip

    def epoch_record(self, state, sums, epoch: int, seconds: float, member: int) -> dict:
        ev, meta = self.ev, self.meta
        drop = self.epoch_inputs(epoch)["drop_path_prob"]
        count = float(sums["train_count"])
        record = {"epoch": epoch, "step": int(state.step),
                  "lr": float(self.schedule(epoch * self.steps_per_epoch)),
                  "drop_path_prob": float(drop or 0.0),
                  "train_loss": float(sums["train_loss_sum"]) / count,
                  "train_acc": 100.0 * float(sums["train_correct"]) / count}  # fmt: skip
        if epoch + 1 == ev.epochs or (ev.eval_every and (epoch + 1) % ev.eval_every == 0):
            key = jax.random.fold_in(self.keys.eval, epoch)
            test = self.evaluate(state, self.d.test_x, self.d.test_y, key, ev.eval_batches)
            record.update(test_loss=test["loss"], test_acc=test["acc"])
            meta.update(test_accuracy=test["acc"], test_loss=test["loss"],
                        test_examples=test["examples"])  # fmt: skip
            if meta["best_test_accuracy"] is None or test["acc"] > meta["best_test_accuracy"]:
                meta.update(best_test_accuracy=test["acc"], best_epoch=epoch)
        record["seconds"] = seconds
        meta["train_seconds"] += seconds
        meta["epoch"] = epoch + 1
        return record

    def progress_fields(self, records) -> dict:
        return {k: records[0][k] for k in ("train_loss", "test_acc") if k in records[0]}

    def checkpoint_due(self, epoch: int) -> bool:
        return epoch + 1 == self.ev.epochs or (epoch + 1) % self.ev.checkpoint_every == 0

    def checkpoint_meta(self, epoch: int, member: int) -> dict:
        return dict(self.meta)


def retrain(
    config, workdir: str, genotype: AnyGenotype, eval_data: EvalData | None = None
) -> tuple[dict, TrainState]:
    """Trains (or resumes, or skips when finished); returns the numbers for result.json
    and the final state."""
    ev = config.evaluate
    d = eval_data or load_eval_data(config.data)
    fam = families.family_of(genotype)
    if fam.auxiliary_head and ev.auxiliary and not ev.imagenet and d.train_x.shape[1] // 4 < 5:
        raise config_lib.ConfigError(
            f"evaluate.auxiliary=True needs images of at least 20 px (the aux head pools 5x5 "
            f"at 1/4 resolution); {config.data.name} has {d.train_x.shape[1]} px"
        )
    model = precision.with_compute_dtype(
        build_network(genotype, ev, d.num_classes), config.compute_dtype
    )
    num_train = int(d.train_y.shape[0])
    spe = ev.steps_per_epoch or data.steps_per_epoch(num_train, ev.batch_size)
    total_steps = spe * ev.epochs
    schedule = make_schedule(ev, spe)
    tx = optim.weight_optimizer(schedule, momentum=ev.momentum, weight_decay=ev.weight_decay,
                                grad_clip=ev.grad_clip)  # fmt: skip
    keys = RetrainKeys.from_seed(config.seed)
    sample_x = jnp.zeros((2, *d.train_x.shape[1:]), jnp.float32)
    state = create_state(model, keys.init, sample_x, tx)
    params_no_aux, params_total = count_params(state.params)
    ckpt_dir = os.path.join(workdir, "checkpoints_evaluate")
    _claim_checkpoints(ckpt_dir, genotype)
    ckpt = Checkpointer(ckpt_dir)
    meta = {"epoch": 0, "test_accuracy": None, "test_loss": None, "best_test_accuracy": None,
            "best_epoch": None, "train_seconds": 0.0}  # fmt: skip
    restored = ckpt.restore_latest(state)
    if restored is not None:
        state, meta = restored
        logger.info("Resumed retraining from step %d (epoch %d)", int(state.step), meta["epoch"])
    start_epoch = meta["epoch"]
    metrics = MetricsWriter(workdir, "evaluate_metrics")
    metrics.truncate_after("epoch", start_epoch)
    progress = Progress("retrain", total_steps, int(state.step), config.log_every_seconds)
    if start_epoch >= ev.epochs:
        logger.info("Retraining already finished (%d epochs); not redone.", ev.epochs)
    stage = RetrainStage(config, model, tx, schedule, d, keys, spe, meta)
    loop = loop_lib.EpochLoop(stage, keys=keys, shared=(d.train_x, d.train_y), progress=progress,
                              runs=[loop_lib.RunFiles(metrics, ckpt)])  # fmt: skip
    try:
        state = loop.run(state, range(start_epoch, ev.epochs))
    finally:
        metrics.close()
        ckpt.close()
    numbers = {
        "test_accuracy": meta["test_accuracy"],  # the final epoch's, the headline number
        "test_error": None if meta["test_accuracy"] is None else 100.0 - meta["test_accuracy"],
        "test_loss": meta["test_loss"],
        "test_examples": meta.get("test_examples"),  # < test_split_size: eval_batches was set
        "test_split_size": int(d.test_y.shape[0]),
        "best_test_accuracy": meta["best_test_accuracy"],  # max over epochs: test-set peeking
        "best_epoch": meta["best_epoch"],
        "epochs": ev.epochs,
        "steps": int(state.step),
        "steps_per_epoch": spe,
        "params_M": params_no_aux / 1e6,
        "params": params_no_aux,
        "params_with_aux": params_total,
        "train_seconds": meta["train_seconds"],
    }
    return numbers, state
