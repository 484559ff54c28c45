"""Search methods as data: one state, one step shape, a registry by name (SPEC 6.3-6.6).

step = make_search_step(model, 'darts', weight_tx=..., arch_tx=...)
state, metrics = jax.jit(step, donate_argnums=0)(state, train_batch, valid_batch,
                                                   jax.random.fold_in(key, i), epsilon)

One step (SPEC 6.4): (1) alpha step on the valid batch with the current weights;
(2) for SDARTS, perturb the new mixing weights; (3) weight step on the train batch.
Both forwards use batch statistics and write back running statistics, alpha step first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from nas_jax import arch, spaces
from nas_jax.init import init_variables
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


class Method(NamedTuple):
    """arch_grad: an `arch_grads` rule, or None for frozen alphas.
    perturb: None, 'random' (SDARTS-RS) or 'pgd' (SDARTS-ADV)."""

    arch_grad: Callable | None
    perturb: str | None = None


METHODS: dict[str, Method] = {
    "darts": Method(arch_grads.first_order),
    "darts_2nd": Method(arch_grads.second_order),
    "darts_2nd_fd": Method(arch_grads.second_order_fd),
    "sdarts_rs": Method(arch_grads.first_order, "random"),
    "sdarts_adv": Method(arch_grads.first_order, "pgd"),
    "fixed_alpha": Method(None),
}


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(
            f"Unknown search method {name!r}; accepted: {', '.join(sorted(METHODS))}"
        ) from None


def _check_options(name: str, method: Method, weight_lr, noise, pgd_steps, uniform) -> None:
    unrolled = method.arch_grad in (arch_grads.second_order, arch_grads.second_order_fd)
    if unrolled and weight_lr is None:
        raise ValueError(f"Method {name!r} needs weight_lr (the virtual step's learning rate)")
    misplaced = [
        opt
        for opt, given, used in (
            ("weight_lr", weight_lr is not None, unrolled),
            ("noise", noise is not None, method.perturb == "random"),
            ("pgd_steps", pgd_steps is not None, method.perturb == "pgd"),
            ("uniform", uniform, method.arch_grad is None),
        )
        if given and not used
    ]
    if misplaced:
        raise ValueError(f"Method {name!r} does not take option(s): {', '.join(misplaced)}")
    if noise is not None and noise not in perturb.NOISES:
        raise ValueError(f"Unknown SDARTS noise {noise!r}; accepted: {', '.join(perturb.NOISES)}")


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
    method: str,
    *,
    weight_tx: optax.GradientTransformation,
    arch_tx: optax.GradientTransformation,
    weight_lr: float | Callable | None = None,
    noise: str | None = None,
    pgd_steps: int | None = None,
    uniform: bool = False,
) -> Callable:
    """The pure step `(state, train_batch, valid_batch, key, epsilon) -> (state, metrics)`.

    Options (each accepted only by the methods that use it):
      weight_lr  darts_2nd*: xi of the virtual step, a float or a schedule of state.step
                 (pass the weight optimizer's schedule).
      noise      sdarts_rs: 'uniform' (default, the code) or 'gaussian' (the paper).
      pgd_steps  sdarts_adv: attack steps, default 7.
      uniform    fixed_alpha: mixing weights exactly 1/K on undecided rows instead of
                 softmax of the frozen initial alphas (SPEC 6.6 [DIFF]).
    `epsilon` is the SDARTS radius for this epoch (`sdarts_epsilon`); others ignore it.
    Metrics: train_loss/acc, weight_grad_norm (before clipping); with an alpha step also
    valid_loss/acc and arch_grad_norm; sdarts_adv adds adv_loss_before/after, adv_reverted.
    """
    m = get_method(method)
    _check_options(method, m, weight_lr, noise, pgd_steps, uniform)
    forward = make_forward(model)

    def step(state: SearchState, train_batch: Batch, valid_batch: Batch, key, epsilon):
        k_arch, k_perturb, k_weight = jax.random.split(key, 3)
        metrics = {}
        arch_state, arch_opt_state = state.arch, state.arch_opt_state
        batch_stats = state.batch_stats

        if m.arch_grad is not None:  # (1) alpha step
            xi = weight_lr(state.step) if callable(weight_lr) else weight_lr
            g, batch_stats, arch_metrics = m.arch_grad(
                forward, state.params, batch_stats, arch_state, train_batch, valid_batch, k_arch, xi
            )
            updates, arch_opt_state = arch_tx.update(g, arch_opt_state, arch_state.alphas)
            arch_state = arch_state._replace(alphas=optax.apply_updates(arch_state.alphas, updates))
            metrics.update(arch_metrics, arch_grad_norm=arch_grads.global_norm(g))

        if uniform:
            zeros = jax.tree.map(jnp.zeros_like, arch_state.alphas)
            weights = arch.weights_from_alphas(zeros, arch_state.decided_op, arch_state.edge_kept)
        else:
            weights = arch.mixing_weights(arch_state)

        rows = perturb.perturbable_rows(arch_state)
        if m.perturb == "random":  # (2) SDARTS: the weight step sees perturbed weights
            weights = perturb.random_smoothing(
                weights, rows, k_perturb, epsilon, noise or "uniform"
            )
        elif m.perturb == "pgd":
            k_start, k_fwd = jax.random.split(k_perturb)
            # Eval-mode BN, no write-back, during the attack (SPEC 6.5 pitfall).
            attack_loss = lambda w: forward(
                state.params, batch_stats, w, train_batch, k_fwd, False
            )[0]
            weights, adv_metrics = perturb.pgd_linf(
                attack_loss, weights, rows, k_start, epsilon, pgd_steps or 7
            )
            metrics.update(adv_metrics)
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


def make_eval_step(model) -> Callable:
    """`eval_step(state, batch, key=None) -> {'loss', 'acc'}`: BN running averages, the
    state's mixing weights, nothing written back. `key` feeds the noise op (S4)."""
    forward = make_forward(model)

    def eval_step(state: SearchState, batch: Batch, key=None):
        key = jax.random.key(0) if key is None else key
        weights = arch.mixing_weights(state.arch)
        loss, (acc, _) = forward(state.params, state.batch_stats, weights, batch, key, False)
        return {"loss": loss, "acc": acc}

    return eval_step
