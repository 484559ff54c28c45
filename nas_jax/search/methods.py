"""Search methods as data: one state, one step shape, a registry by name (SPEC 6.3-6.6).

A method is a `SearchMethod` entry in `METHODS`: how its alphas become mixing weights,
how the alpha gradient is taken, what perturbation the weight step sees, which options
it takes. A new method is one entry (`register(SearchMethod(...))`), from any module.

step = make_search_step(model, 'darts', weight_tx=..., arch_tx=...)
state, metrics = jax.jit(step, donate_argnums=0)(state, train_batch, valid_batch,
                                                   jax.random.fold_in(key, i), epsilon)

One step (SPEC 6.4): (1) alpha step on the valid batch with the current weights;
(2) for SDARTS, perturb the new mixing weights; (3) weight step on the train batch.
Both forwards use batch statistics and write back running statistics, alpha step first.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from nas_jax import arch, spaces
from nas_jax.init import init_variables
from nas_jax.registry import Registry
from nas_jax.search import arch_grads, perturb

Batch = tuple[jax.Array, jax.Array]


class SearchState(NamedTuple):
    step: jax.Array  # int32 scalar
    params: Any
    batch_stats: Any
    arch: arch.ArchState
    opt_state: optax.OptState
    arch_opt_state: optax.OptState


def create_search_state(
    model,
    key: jax.Array,
    sample_x: jax.Array,
    space: spaces.SearchSpace,
    weight_tx: optax.GradientTransformation,
    arch_tx: optax.GradientTransformation,
) -> SearchState:
    """Alphas ~ 1e-3 N(0, 1), PyTorch-default weights, fresh optimizer states."""
    k_arch, k_params = jax.random.split(key)
    arch_state = arch.init_arch_state(k_arch, space)
    variables = init_variables(
        model, k_params, sample_x, arch.mixing_weights(arch_state), train=True
    )
    params = variables["params"]
    return SearchState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=variables.get("batch_stats", {}),
        arch=arch_state,
        opt_state=weight_tx.init(params),
        arch_opt_state=arch_tx.init(arch_state.alphas),
    )


Weights = dict[str, jax.Array]
REQUIRED = object()  # an option without a default: the method cannot run without it


def mixing_from_alphas(arch_state: arch.ArchState, options: Mapping) -> Weights:
    """softmax(alpha) on undecided rows, one-hot on decided ones, zero on pruned edges."""
    del options
    return arch.mixing_weights(arch_state)


@dataclasses.dataclass(frozen=True)
class SearchMethod:
    """A bilevel search method, one registry entry.

    name: the `search.method` value.
    arch_grad: how the alpha gradient is taken (an `arch_grads` rule:
        `(forward, params, batch_stats, arch_state, train_batch, valid_batch, key, xi, *,
        mixing) -> (grad, batch_stats, metrics)`, differentiating through the method's
        `mixing`), or None: alphas are not trained.
    mixing: `(arch_state, options) -> mixing weights`: how alphas become the weights
        every forward of the weight step, and of selection, uses.
    perturb: what the weight step sees instead of the clean weights, or None:
        `(weights, rows, key, epsilon, attack_loss, options) -> (weights, metrics)` with
        `attack_loss(weights, key)` the eval-mode loss on the train batch and `rows` the
        perturbable rows per cell type (`perturb.perturbable_rows`).
    options: the step options it accepts, name -> default (`REQUIRED` = no default).
    from_config: `(config.search, lr_schedule) -> options` for a run.
    check: raises ValueError (one line) for bad option values, or None.
    description: one line for listings.
    """

    name: str
    arch_grad: Callable | None
    mixing: Callable[[arch.ArchState, Mapping], Weights] = mixing_from_alphas
    perturb: Callable | None = None
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    from_config: Callable[[Any, Callable], dict] = lambda search, lr_schedule: {}
    check: Callable[[Mapping], None] | None = None
    description: str = ""


METHODS: Registry[SearchMethod] = Registry("search method")


def register(method: SearchMethod) -> SearchMethod:
    """Adds a method to `METHODS` under its name."""
    return METHODS.register(method.name, method)


def get_method(name: str) -> SearchMethod:
    return METHODS.get(name)


def resolve_options(method: SearchMethod, options: Mapping) -> dict:
    """The method's options with defaults filled in; ValueError (one line) for options it
    does not take, a required one missing, or a bad value its `check` rejects."""
    misplaced = sorted(set(options) - set(method.options))
    if misplaced:
        raise ValueError(f"Method {method.name!r} does not take option(s): {', '.join(misplaced)}")
    out = {**method.options, **options}
    missing = [k for k, v in out.items() if v is REQUIRED]
    if missing:
        raise ValueError(f"Method {method.name!r} needs option(s): {', '.join(missing)}")
    if method.check is not None:
        method.check(out)
    return out


def options_from_config(search_config, lr_schedule) -> dict:
    """The step options of `search_config.method`, checked."""
    method = get_method(search_config.method)
    return resolve_options(method, method.from_config(search_config, lr_schedule))


def mixing_from_config(search_config, lr_schedule) -> Callable[[arch.ArchState], Weights]:
    """`arch_state -> mixing weights` of `search_config.method` with its options: what a
    run's evaluation and selection apply to the supernet."""
    method = get_method(search_config.method)
    options = options_from_config(search_config, lr_schedule)
    return lambda arch_state: method.mixing(arch_state, options)


# --------------------------------------------------------------------------------------
# The reference's methods (SPEC 6.3-6.6)
# --------------------------------------------------------------------------------------


def _uniform_or_alphas(arch_state: arch.ArchState, options: Mapping) -> Weights:
    """fixed_alpha: exactly 1/K on undecided rows with `uniform`, else softmax of the
    frozen initial alphas (SPEC 6.6 [DIFF])."""
    if options["uniform"]:
        zeros = jax.tree.map(jnp.zeros_like, arch_state.alphas)
        return arch.weights_from_alphas(zeros, arch_state.decided_op, arch_state.edge_kept)
    return arch.mixing_weights(arch_state)


def _random_smoothing(weights, rows, key, epsilon, attack_loss, options):
    """SDARTS-RS: uniform (the code) or Gaussian (the paper) noise of radius epsilon."""
    return perturb.random_smoothing(weights, rows, key, epsilon, options["noise"]), {}


def _check_noise(options: Mapping) -> None:
    if options["noise"] not in perturb.NOISES:
        raise ValueError(
            f"Unknown SDARTS noise {options['noise']!r}; accepted: {', '.join(perturb.NOISES)}"
        )


def _pgd(weights, rows, key, epsilon, attack_loss, options):
    """SDARTS-ADV: PGD on the mixing weights, eval-mode BN with no write-back during the
    attack (SPEC 6.5 pitfall)."""
    k_start, k_fwd = jax.random.split(key)
    return perturb.pgd_linf(
        lambda w: attack_loss(w, k_fwd), weights, rows, k_start, epsilon, options["pgd_steps"]
    )


def _unrolled_options(search, lr_schedule) -> dict:
    return {"weight_lr": lr_schedule}  # the virtual step follows the weight lr


for _method in (
    SearchMethod("darts", arch_grads.first_order, description="DARTS, first order"),
    SearchMethod(
        "darts_2nd", arch_grads.second_order, options={"weight_lr": REQUIRED},
        from_config=_unrolled_options, description="DARTS, exact second order",
    ),
    SearchMethod(
        "darts_2nd_fd", arch_grads.second_order_fd, options={"weight_lr": REQUIRED},
        from_config=_unrolled_options,
        description="DARTS, second order by finite differences (the paper's)",
    ),
    SearchMethod(
        "sdarts_rs", arch_grads.first_order, perturb=_random_smoothing,
        options={"noise": "uniform"},
        from_config=lambda search, lr: {"noise": search.sdarts_noise}, check=_check_noise,
        description="SDARTS random smoothing of the weight step's mixing weights",
    ),
    SearchMethod(
        "sdarts_adv", arch_grads.first_order, perturb=_pgd, options={"pgd_steps": 7},
        from_config=lambda search, lr: {"pgd_steps": search.pgd_steps},
        description="SDARTS adversarial (PGD) perturbation of the mixing weights",
    ),
    SearchMethod(
        "fixed_alpha", None, mixing=_uniform_or_alphas, options={"uniform": False},
        from_config=lambda search, lr: {"uniform": search.fixed_uniform},
        description="alphas frozen at their initial values (or exactly uniform)",
    ),
):  # fmt: skip
    register(_method)


def cross_entropy(logits_BxN: jax.Array, y_B: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean CE loss and accuracy."""
    loss = optax.softmax_cross_entropy_with_integer_labels(logits_BxN, y_B).mean()
    acc = jnp.mean((jnp.argmax(logits_BxN, axis=-1) == y_B).astype(jnp.float32))
    return loss, acc


def make_forward(model) -> Callable:
    """forward(params, batch_stats, weights, batch, key, train) -> (loss, (acc, batch_stats)).

    train=True: batch statistics, running averages updated in the returned batch_stats;
    train=False: running averages, batch_stats returned unchanged.
    """

    def forward(params, batch_stats, weights, batch, key, train):
        x_BxHxWxC, y_B = batch
        variables = {"params": params, "batch_stats": batch_stats}
        rngs = {"noise": key}
        if train:
            logits, new = model.apply(
                variables, x_BxHxWxC, weights, train=True, mutable=["batch_stats"], rngs=rngs
            )
            batch_stats = new["batch_stats"]
        else:
            logits = model.apply(variables, x_BxHxWxC, weights, train=False, rngs=rngs)
        loss, acc = cross_entropy(logits, y_B)
        return loss, (acc, batch_stats)

    return forward


def make_search_step(
    model,
    method: str | SearchMethod,
    *,
    weight_tx: optax.GradientTransformation,
    arch_tx: optax.GradientTransformation,
    **options,
) -> Callable:
    """The pure step `(state, train_batch, valid_batch, key, epsilon) -> (state, metrics)`.

    `method` is a registered name or a `SearchMethod`; `options` are its step options
    (`SearchMethod.options`), e.g. weight_lr (darts_2nd*: xi of the virtual step, a float
    or a schedule of state.step), noise (sdarts_rs), pgd_steps (sdarts_adv), uniform
    (fixed_alpha). `epsilon` is the perturbation radius of this epoch; methods without a
    perturbation ignore it.
    Metrics: train_loss/acc, weight_grad_norm (before clipping); with an alpha step also
    valid_loss/acc and arch_grad_norm; a perturbation adds its own (sdarts_adv:
    adv_loss_before/after, adv_reverted).
    """
    m = get_method(method) if isinstance(method, str) else method
    opts = resolve_options(m, options)
    forward = make_forward(model)

    def step(state: SearchState, train_batch: Batch, valid_batch: Batch, key, epsilon):
        k_arch, k_perturb, k_weight = jax.random.split(key, 3)
        metrics = {}
        arch_state, arch_opt_state = state.arch, state.arch_opt_state
        batch_stats = state.batch_stats

        if m.arch_grad is not None:  # (1) alpha step
            xi = opts.get("weight_lr")
            xi = xi(state.step) if callable(xi) else xi
            g, batch_stats, arch_metrics = m.arch_grad(
                forward, state.params, batch_stats, arch_state, train_batch, valid_batch,
                k_arch, xi, mixing=lambda a: m.mixing(a, opts),
            )  # fmt: skip
            updates, arch_opt_state = arch_tx.update(g, arch_opt_state, arch_state.alphas)
            arch_state = arch_state._replace(alphas=optax.apply_updates(arch_state.alphas, updates))
            metrics.update(arch_metrics, arch_grad_norm=arch_grads.global_norm(g))

        weights = m.mixing(arch_state, opts)
        if m.perturb is not None:  # (2) the weight step sees perturbed weights

            def attack_loss(w, k):
                return forward(state.params, batch_stats, w, train_batch, k, False)[0]

            rows = perturb.perturbable_rows(arch_state)
            weights, perturb_metrics = m.perturb(
                weights, rows, k_perturb, epsilon, attack_loss, opts
            )
            metrics.update(perturb_metrics)
        weights = jax.lax.stop_gradient(weights)

        def train_loss(params):  # (3) weight step
            return forward(params, batch_stats, weights, train_batch, k_weight, True)

        (loss, (acc, batch_stats)), g = jax.value_and_grad(train_loss, has_aux=True)(state.params)
        updates, opt_state = weight_tx.update(g, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics.update(train_loss=loss, train_acc=acc, weight_grad_norm=arch_grads.global_norm(g))
        new_state = SearchState(
            step=state.step + 1,
            params=params,
            batch_stats=batch_stats,
            arch=arch_state,
            opt_state=opt_state,
            arch_opt_state=arch_opt_state,
        )
        return new_state, metrics

    return step
