"""Gradients of the validation loss w.r.t. the alphas (SPEC 6.3).

Every rule has the signature
  rule(forward, params, batch_stats, arch_state, train_batch, valid_batch, key, xi,
       *, mixing=arch.mixing_weights)
    -> (grad_alphas, batch_stats, metrics)
where `forward(params, batch_stats, weights, batch, key, train)` returns
`(loss, (acc, new_batch_stats))`, `xi` is the weight learning rate of the
virtual step (ignored by first order) and `mixing(arch_state) -> weights` is how the
search method turns alphas into mixing weights (the gradient flows through it).
Forwards run BN in train mode; the returned batch_stats are the running statistics
written back by the alpha step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from nas_jax import arch


def global_norm(tree) -> jax.Array:
    """L2 norm over all leaves (optax.global_norm is deprecated, optax.tree.norm is new)."""
    return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)))


def _weights(alphas, state: arch.ArchState, mixing):
    return mixing(state._replace(alphas=alphas))


def first_order(forward, params, batch_stats, state, train_batch, valid_batch, key, xi, *,
                mixing=arch.mixing_weights):  # fmt: skip
    """d/dalpha L_val(w, alpha) with the current weights (what the reference runs)."""
    del train_batch, xi

    def valid_loss(alphas):
        w = _weights(alphas, state, mixing)
        return forward(params, batch_stats, w, valid_batch, key, True)

    (loss, (acc, bs)), g = jax.value_and_grad(valid_loss, has_aux=True)(state.alphas)
    return g, bs, {"valid_loss": loss, "valid_acc": acc}


def _virtual_step(forward, params, batch_stats, weights, train_batch, key, xi):
    """w' = w - xi * grad_w L_train(w, alpha): one plain SGD step, as in DARTS."""
    train_loss = lambda p: forward(p, batch_stats, weights, train_batch, key, True)
    g_w, (_, bs) = jax.grad(train_loss, has_aux=True)(params)
    return jax.tree.map(lambda p, g: p - xi * g, params, g_w), bs


def unrolled_valid_loss(
    forward, params, batch_stats, alphas, state, train_batch, valid_batch, key, xi, *,
    mixing=arch.mixing_weights,
):  # fmt: skip
    """L_val(w - xi * grad_w L_train(w, alpha), alpha), differentiable in alphas.

    BN running statistics are chained: train forward at w, then valid forward at w'.
    """
    k_train, k_valid = jax.random.split(key)
    w = _weights(alphas, state, mixing)
    virtual, bs = _virtual_step(forward, params, batch_stats, w, train_batch, k_train, xi)
    return forward(virtual, bs, w, valid_batch, k_valid, True)


def second_order(forward, params, batch_stats, state, train_batch, valid_batch, key, xi, *,
                 mixing=arch.mixing_weights):  # fmt: skip
    """Exact DARTS second-order gradient: reverse mode through the unrolled step."""
    loss_fn = lambda a: unrolled_valid_loss(
        forward, params, batch_stats, a, state, train_batch, valid_batch, key, xi, mixing=mixing
    )
    (loss, (acc, bs)), g = jax.value_and_grad(loss_fn, has_aux=True)(state.alphas)
    return g, bs, {"valid_loss": loss, "valid_acc": acc}


def second_order_fd(forward, params, batch_stats, state, train_batch, valid_batch, key, xi, *,
                    mixing=arch.mixing_weights, r=0.01):  # fmt: skip
    """DARTS's finite-difference Hessian-vector approximation of `second_order`:

    g = dalpha L_val(w') - xi * (dalpha L_train(w+) - dalpha L_train(w-)) / (2 eps),
    w+- = w +- eps * dw', dw' = grad_w' L_val(w'), eps = r / ||dw'||.
    Running statistics as in `unrolled_valid_loss`; the w+- forwards write nothing back.
    """
    k_train, k_valid = jax.random.split(key)  # same streams as unrolled_valid_loss
    w = _weights(state.alphas, state, mixing)
    virtual, bs = _virtual_step(forward, params, batch_stats, w, train_batch, k_train, xi)

    def valid_loss(p, alphas):
        return forward(p, bs, _weights(alphas, state, mixing), valid_batch, k_valid, True)

    (loss, (acc, bs)), (dw, dalpha) = jax.value_and_grad(valid_loss, (0, 1), has_aux=True)(
        virtual, state.alphas
    )
    eps = r / global_norm(dw)

    def train_alpha_grad(sign):
        p = jax.tree.map(lambda a, d: a + sign * eps * d, params, dw)
        train_loss = lambda al: forward(
            p, batch_stats, _weights(al, state, mixing), train_batch, k_train, True
        )[0]
        return jax.grad(train_loss)(state.alphas)

    g_plus, g_minus = train_alpha_grad(1.0), train_alpha_grad(-1.0)
    g = jax.tree.map(lambda d, gp, gm: d - xi * (gp - gm) / (2.0 * eps), dalpha, g_plus, g_minus)
    return g, bs, {"valid_loss": loss, "valid_acc": acc}
