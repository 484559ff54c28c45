"""Benchmark cases: each builds its inputs at the given sizes, compiles, and returns a
`Prepared` step that runs one unit of work and blocks until it is done.

Search-phase pieces (synthetic data, the real step functions of the library):
  weight       the weight step alone (`fixed_alpha` search step), prepared float batches
  alpha1       first-order alpha step (`arch_grads.first_order` + Adam), prepared batches
  alpha2       exact second-order alpha step (`arch_grads.second_order`)
  alpha2_fd    DARTS's finite-difference second-order alpha step
  search       one whole DARTS step as the search loop runs it: both batches drawn and
               augmented on device, alpha step, weight step (`search.run.make_train_step`)
  sdarts_rs    the same with SDARTS random smoothing
  sdarts_adv   the same with SDARTS-ADV (7 PGD steps)
  tune         one PT tuning step (`tuning.make_tune_step`)
  fwd_masked   one train-mode forward with one op of one edge masked out
  score_batched  all K op removals of one edge scored over `score_batches` batches, one
               vmapped call per batch (`selection.scoring.Scorer.score_ops`)
  score_seq    the same K removals as K sequential single-variant passes
  retrain      one retraining step of the DARTS_V2 evaluation network (SPEC 8.1)
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from nas_jax import kernels
from nas_jax.kernels import native

SEARCH_CASES = (
    "weight", "alpha1", "alpha2", "alpha2_fd", "search", "sdarts_rs", "sdarts_adv", "tune",
    "fwd_masked", "score_batched", "score_seq",
)  # fmt: skip
CASES = SEARCH_CASES + ("retrain",)
RETRAIN_GENOTYPE = "DARTS_V2"
_MEAN, _STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
_EDGE = 1  # the edge whose ops are masked or scored (any edge costs the same)


@dataclasses.dataclass(frozen=True)
class Sizes:
    space: str = "nb201"
    batch: int = 64
    C: int = 16
    layers: int = 8
    nb201_cells: int = 5
    image: int = 32
    score_batches: int = 10
    retrain_C: int = 36
    retrain_layers: int = 20
    retrain_batch: int = 96
    retrain_aux: bool = True
    dtype: str = "float32"  # compute dtype (config.compute_dtype)


class Prepared(NamedTuple):
    step: Callable[[], None]  # one unit of work, blocking
    compile_s: float | None  # trace + lower + compile; None: only the first call knows it
    flops: float | None  # per unit of work, from XLA's cost analysis
    images: int  # distinct images one unit of work reads
    detail: dict


def _flops(stage) -> float | None:
    """XLA's flop count of a Lowered or Compiled stage (None where the backend has none)."""
    try:
        cost = stage.cost_analysis()
    except Exception:  # noqa: BLE001 -- optional on some backends
        return None
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    flops = (cost or {}).get("flops")
    return float(flops) if flops and flops > 0 else None


def _native_flops(traced) -> float:
    """Flops of the native CPU kernels' custom calls in a traced function, which XLA's cost
    analysis does not see (0 where they are not in use)."""
    return native.flops(traced.jaxpr) if kernels.native_active(jnp.float32) else 0.0


def _count_flops(fn, *args) -> float | None:
    """Flops of `fn(*args)`: XLA's cost analysis of its lowering plus `_native_flops`, from
    one trace."""
    traced = jax.jit(fn).trace(*args)
    return (_flops(traced.lower()) or 0.0) + _native_flops(traced) or None


def _compile(jitted, *args):
    """AOT: (compiled, seconds to trace, lower and compile, flops)."""
    t0 = time.perf_counter()
    traced = jitted.trace(*args)
    secs = time.perf_counter() - t0
    extra = _native_flops(traced)  # untimed; from the same trace (a second one took seconds)
    t0 = time.perf_counter()
    compiled = traced.lower().compile()
    secs += time.perf_counter() - t0
    return compiled, secs, (_flops(compiled) or 0.0) + extra or None


def _carry_state(compiled, state, *rest) -> Callable[[], None]:
    """A step that feeds its donated state back in, call after call."""
    box = [state]

    def step():
        box[0], metrics = compiled(box[0], *rest)
        jax.block_until_ready((box[0], metrics))

    return step


class _Search(NamedTuple):
    config: object
    setup: object
    data: object
    state: object


def _search_context(s: Sizes, method: str = "darts") -> _Search:
    from nas_jax import config_lib
    from nas_jax.search import methods
    from nas_jax.search import run as search_run

    config = config_lib.base_config()
    config.model.update(space=s.space, C=s.C, layers=s.layers, nb201_cells=s.nb201_cells)
    config.data.batch_size = s.batch
    config.search.method = method
    config.compute_dtype = s.dtype
    n = 4 * s.batch  # each half in device memory; the step gathers its batches from it
    rng = np.random.default_rng(0)
    images = lambda: jnp.asarray(rng.integers(0, 256, (n, s.image, s.image, 3), np.uint8))
    labels = lambda: jnp.asarray(rng.integers(0, 10, n).astype(np.int32))
    sd = search_run.SearchData(images(), labels(), images(), labels(), _MEAN, _STD, 10)
    setup = search_run.make_setup(config, sd)
    sample_x = jnp.zeros((2, s.image, s.image, 3), jnp.float32)
    state = methods.create_search_state(
        setup.model, jax.random.key(0), sample_x, setup.space, setup.weight_tx, setup.arch_tx
    )
    return _Search(config, setup, sd, state)


def _float_batches(s: Sizes):
    """(train, valid) float batches, drawn by numpy: jax.random would compile each draw."""
    rng = np.random.default_rng(1)
    x = lambda: jnp.asarray(rng.standard_normal((s.batch, s.image, s.image, 3), np.float32))
    y = lambda: jnp.asarray(rng.integers(0, 10, s.batch).astype(np.int32))
    return (x(), y()), (x(), y())


def prepare_weight(s: Sizes) -> Prepared:
    from nas_jax.search import methods

    ctx = _search_context(s, "fixed_alpha")
    step = methods.make_search_step(
        ctx.setup.model, "fixed_alpha", weight_tx=ctx.setup.weight_tx, arch_tx=ctx.setup.arch_tx
    )
    tb, vb = _float_batches(s)
    args = (ctx.state, tb, vb, jax.random.key(2), jnp.float32(0.0))
    compiled, secs, flops = _compile(jax.jit(step, donate_argnums=0), *args)
    return Prepared(_carry_state(compiled, *args), secs, flops, s.batch, {})


_ALPHA_RULES = {"alpha1": "first_order", "alpha2": "second_order", "alpha2_fd": "second_order_fd"}


def prepare_alpha(s: Sizes, case: str) -> Prepared:
    from nas_jax.search import arch_grads, methods

    ctx = _search_context(s)
    rule = getattr(arch_grads, _ALPHA_RULES[case])
    forward = methods.make_forward(ctx.setup.model)
    arch_tx, xi = ctx.setup.arch_tx, float(ctx.config.search.lr)

    def alpha_step(state, train_batch, valid_batch, key):  # step (1) of make_search_step
        g, bs, metrics = rule(forward, state.params, state.batch_stats, state.arch,
                              train_batch, valid_batch, key, xi)  # fmt: skip
        updates, arch_opt_state = arch_tx.update(g, state.arch_opt_state, state.arch.alphas)
        arch = state.arch._replace(alphas=optax.apply_updates(state.arch.alphas, updates))
        return state._replace(batch_stats=bs, arch=arch, arch_opt_state=arch_opt_state), metrics

    tb, vb = _float_batches(s)
    args = (ctx.state, tb, vb, jax.random.key(2))
    compiled, secs, flops = _compile(jax.jit(alpha_step, donate_argnums=0), *args)
    images = s.batch if case == "alpha1" else 2 * s.batch  # second order reads both batches
    return Prepared(_carry_state(compiled, *args), secs, flops, images, {})


_LOOP_METHODS = {"search": "darts", "sdarts_rs": "sdarts_rs", "sdarts_adv": "sdarts_adv"}


def prepare_loop_step(s: Sizes, case: str) -> Prepared:
    from nas_jax.search import run as search_run

    ctx = _search_context(s, _LOOP_METHODS[case])
    step = search_run.make_train_step(ctx.setup, ctx.config, _MEAN, _STD)
    inputs = {"epsilon": jnp.float32(ctx.config.search.epsilon_max),
              "cutout_prob": jnp.float32(0.0)}  # fmt: skip
    args = (ctx.state, search_run.RunKeys.from_seed(0), ctx.data, inputs)
    compiled, secs, flops = _compile(jax.jit(step, donate_argnums=0), *args)
    return Prepared(_carry_state(compiled, *args), secs, flops, 2 * s.batch,
                    {"steps_per_epoch_cifar10": 391})  # fmt: skip


def prepare_tune(s: Sizes) -> Prepared:
    from nas_jax.selection import tuning

    ctx = _search_context(s)
    spe = ctx.setup.steps_per_epoch
    tx, schedule = tuning.tune_optimizer(ctx.config, spe, ctx.config.select.tune_epochs)
    step = tuning.make_tune_step(ctx.setup, ctx.config, tx, schedule, _MEAN, _STD, 0)
    state = tuning.fresh_weight_optimizer(ctx.state, tx)
    keys = tuning.TuneKeys(*jax.random.split(jax.random.key(3), 3))
    inputs = {"epsilon": jnp.float32(0.0), "cutout_prob": jnp.float32(0.0)}
    args = (state, keys, ctx.data, inputs)
    compiled, secs, flops = _compile(jax.jit(step, donate_argnums=0), *args)
    return Prepared(_carry_state(compiled, *args), secs, flops, 2 * s.batch, {})


def prepare_fwd_masked(s: Sizes) -> Prepared:
    from nas_jax import arch
    from nas_jax.search import methods

    ctx = _search_context(s)
    forward = methods.make_forward(ctx.setup.model)
    cell_type = ctx.setup.space.cell_types[0]
    w = arch.remove_op(arch.mixing_weights(ctx.state.arch), cell_type, _EDGE, 1)
    fwd = jax.jit(lambda p, bs, w, batch, key: forward(p, bs, w, batch, key, True))
    tb, _ = _float_batches(s)
    args = (ctx.state.params, ctx.state.batch_stats, w, tb, jax.random.key(2))
    compiled, secs, flops = _compile(fwd, *args)
    return Prepared(lambda: jax.block_until_ready(compiled(*args)), secs, flops, s.batch, {})


def prepare_scoring(s: Sizes, case: str) -> Prepared:
    from nas_jax import arch
    from nas_jax.selection import scoring

    ctx = _search_context(s)
    model, space = ctx.setup.model, ctx.setup.space
    st = ctx.state
    variables = {"params": st.params, "batch_stats": st.batch_stats}
    weights = arch.mixing_weights(st.arch)
    cell_type, K, nb = space.cell_types[0], space.num_ops, s.score_batches
    n = s.batch * nb
    rng = np.random.default_rng(0)
    split = (jnp.asarray(rng.integers(0, 256, (n, s.image, s.image, 3), dtype=np.uint8)),
             jnp.asarray(rng.integers(0, 10, n).astype(np.int32)))  # fmt: skip
    protocol = scoring.DataProtocol(s.batch, _MEAN, _STD, pad=4)
    sc = scoring.Scorer(model, protocol)
    key = jax.random.key(4)
    if case == "score_batched":
        step = lambda: sc.score_ops(variables, weights, cell_type, _EDGE, split, key, nb)
    else:
        variants = [arch.remove_op(weights, cell_type, _EDGE, k) for k in range(K)]

        def step():
            for wk in variants:
                sc.evaluate(variables, wk, split, key, nb)

    # Flops of the model work of one batch (the batch draw is negligible), times batches.
    tb, _ = _float_batches(s)
    mask = jnp.ones((s.batch,), bool)
    score = scoring.make_variant_scorer(model)
    if case == "score_batched":
        one = lambda v, w, x, y, m, k: scoring.score_op_removals(
            score, v, w, _EDGE, x, y, m, k, cell_type=cell_type
        )
        flops = _count_flops(one, variables, weights, *tb, mask, key)
    else:
        w_1 = jax.tree.map(lambda w: w[None], weights)
        flops = _count_flops(score, variables, w_1, *tb, mask, key)
        flops = flops * K if flops else None
    return Prepared(step, None, flops * nb if flops else None, n,
                    {"variants": K, "score_batches": nb})  # fmt: skip


def prepare_retrain(s: Sizes) -> Prepared:
    import math

    from nas_jax import config_lib, genotype, precision
    from nas_jax.evaluation import retrain
    from nas_jax.search import optim

    config = config_lib.base_config()
    ev = config.evaluate
    ev.update(C=s.retrain_C, layers=s.retrain_layers, batch_size=s.retrain_batch,
              auxiliary=s.retrain_aux)  # fmt: skip
    model = retrain.build_network(genotype.get_genotype(RETRAIN_GENOTYPE), ev, 10)
    model = precision.with_compute_dtype(model, s.dtype)
    spe = math.ceil(50_000 / s.retrain_batch)
    tx = optim.weight_optimizer(optim.cosine_epoch_schedule(ev.lr, ev.lr_min, ev.epochs, spe))
    keys = retrain.RetrainKeys.from_seed(0)
    shape = (s.image, s.image, 3)
    state = retrain.create_state(model, keys.init, jnp.zeros((2, *shape)), tx)
    n = 4 * s.retrain_batch
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.integers(0, 256, (n, *shape), dtype=np.uint8))
    y = jnp.asarray(rng.integers(0, 10, n).astype(np.int32))
    step = retrain.make_train_step(model, tx, ev, config.data, _MEAN, _STD, n)
    drop = jnp.float32(ev.drop_path_prob / 2) if ev.drop_path_prob else None
    args = (state, keys, (x, y), {"drop_path_prob": drop})
    compiled, secs, flops = _compile(jax.jit(step, donate_argnums=0), *args)
    return Prepared(_carry_state(compiled, *args), secs, flops, s.retrain_batch,
                    {"genotype": RETRAIN_GENOTYPE, "params_no_aux":
                     retrain.count_params(state.params)[0], "steps_per_epoch": spe})  # fmt: skip


def prepare(case: str, s: Sizes) -> Prepared:
    if case not in CASES:
        raise ValueError(f"Unknown benchmark case {case!r}; accepted: {', '.join(CASES)}")
    if case == "weight":
        return prepare_weight(s)
    if case in _ALPHA_RULES:
        return prepare_alpha(s, case)
    if case in _LOOP_METHODS:
        return prepare_loop_step(s, case)
    if case == "tune":
        return prepare_tune(s)
    if case == "fwd_masked":
        return prepare_fwd_masked(s)
    if case.startswith("score_"):
        return prepare_scoring(s, case)
    return prepare_retrain(s)
