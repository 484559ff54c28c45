"""The optax chains follow PyTorch's SGD/Adam update rules step by step (SPEC 6.2, 14).

The references below are hand-written numpy versions of torch.optim.SGD (momentum,
weight_decay, after clip_grad_norm_) and torch.optim.Adam (weight_decay). Each
equivalence has a negative control with a plausible wrong ordering.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from nas_jax.search import optim


def tree(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "conv": {"kernel": rng.normal(size=(3, 3, 2, 4)).astype(np.float32)},
        "bn": {"scale": rng.normal(size=(4,)).astype(np.float32), "bias": np.zeros(4, np.float32)},
    }


def grads(step, seed=1):
    """Gradients whose global norm crosses the clip threshold 5 on some steps."""
    rng = np.random.default_rng(seed + step)
    scale = 3.0 if step % 2 == 0 else 0.05  # norm ~ 3*sqrt(80) vs ~ 0.45
    return jax.tree.map(lambda a: (scale * rng.normal(size=a.shape)).astype(np.float32), tree())


def torch_sgd(params, grad_seq, lrs, momentum, wd, clip):
    params = jax.tree.map(lambda a: a.astype(np.float64), params)
    buf = None
    clipped = []
    for g, lr in zip(grad_seq, lrs):
        g = jax.tree.map(lambda a: a.astype(np.float64), g)
        norm = math.sqrt(sum(float(np.sum(a**2)) for a in jax.tree.leaves(g)))
        coef = clip / (norm + 1e-6)  # torch.nn.utils.clip_grad_norm_
        clipped.append(coef < 1)
        if coef < 1:
            g = jax.tree.map(lambda a: a * coef, g)
        d = jax.tree.map(lambda a, p: a + wd * p, g, params)
        buf = d if buf is None else jax.tree.map(lambda b, a: momentum * b + a, buf, d)
        params = jax.tree.map(lambda p, b: p - lr * b, params, buf)
    return params, clipped


def torch_adam(params, grad_seq, lr, b1, b2, eps, wd):
    params = jax.tree.map(lambda a: a.astype(np.float64), params)
    m = jax.tree.map(np.zeros_like, params)
    v = jax.tree.map(np.zeros_like, params)
    for t, g in enumerate(grad_seq, start=1):
        g = jax.tree.map(lambda a, p: a.astype(np.float64) + wd * p, g, params)
        m = jax.tree.map(lambda a, b: b1 * a + (1 - b1) * b, m, g)
        v = jax.tree.map(lambda a, b: b2 * a + (1 - b2) * b * b, v, g)
        bc1, bc2 = 1 - b1**t, 1 - b2**t

        def upd(p, m_, v_):
            return p - (lr / bc1) * m_ / (np.sqrt(v_) / math.sqrt(bc2) + eps)

        params = jax.tree.map(upd, params, m, v)
    return params


def run_optax(tx, params, grad_seq):
    step = jax.jit(lambda g, s, p: tx.update(g, s, p))
    p = jax.tree.map(jnp.asarray, params)
    state = tx.init(p)
    for g in grad_seq:
        updates, state = step(g, state, p)
        p = optax.apply_updates(p, updates)
    return p


def max_rel_err(a, b):
    """Largest |a - b| / max(|b|, 1): float32 rounding of O(1) parameters is ~1e-7."""
    return max(
        float(np.max(np.abs(np.asarray(x, np.float64) - y) / np.maximum(np.abs(y), 1.0)))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
    )


def test_cosine_epoch_schedule_steps_per_epoch():
    sched = optim.cosine_epoch_schedule(0.025, 0.001, epochs=50, steps_per_epoch=391)
    lr = lambda s: float(sched(jnp.int32(s)))
    assert lr(0) == pytest.approx(0.025) and lr(390) == pytest.approx(0.025)
    e1 = 0.001 + 0.024 * (1 + math.cos(math.pi / 50)) / 2
    assert lr(391) == pytest.approx(e1, rel=1e-6) and lr(781) == pytest.approx(e1, rel=1e-6)
    assert lr(49 * 391) == pytest.approx(0.001 + 0.024 * (1 + math.cos(math.pi * 49 / 50)) / 2)
    assert float(optim.constant_schedule(0.0025)(jnp.int32(10**6))) == pytest.approx(0.0025)
    with pytest.raises(ValueError):
        optim.cosine_epoch_schedule(0.025, 0.001, epochs=0, steps_per_epoch=1)


def test_weight_optimizer_matches_torch_sgd():
    steps, per_epoch, epochs = 6, 2, 3  # lr changes at steps 2 and 4
    sched = optim.cosine_epoch_schedule(0.5, 0.01, epochs, per_epoch)
    lrs = [float(sched(jnp.int32(s))) for s in range(steps)]
    assert len(set(lrs)) == 3
    grad_seq = [grads(s) for s in range(steps)]
    ref, clipped = torch_sgd(tree(), grad_seq, lrs, momentum=0.9, wd=0.05, clip=5.0)
    assert any(clipped) and not all(clipped)
    got = run_optax(optim.weight_optimizer(sched, weight_decay=0.05), tree(), grad_seq)
    assert max_rel_err(got, ref) < 1e-5

    # Negative controls: decay added before the clip; decoupled decay outside momentum.
    wrong_order = optax.chain(
        optax.add_decayed_weights(0.05),
        optax.clip_by_global_norm(5.0),
        optax.trace(0.9),
        optax.scale_by_learning_rate(sched),
    )
    decoupled = optax.chain(
        optax.clip_by_global_norm(5.0),
        optax.trace(0.9),
        optax.add_decayed_weights(0.05),
        optax.scale_by_learning_rate(sched),
    )
    for tx in (wrong_order, decoupled):
        assert max_rel_err(run_optax(tx, tree(), grad_seq), ref) > 1e-3


def test_arch_optimizer_matches_torch_adam():
    grad_seq = [jax.tree.map(lambda a: a * 0.1, grads(s)) for s in range(5)]
    ref = torch_adam(tree(), grad_seq, lr=0.01, b1=0.5, b2=0.999, eps=1e-8, wd=0.1)
    got = run_optax(optim.arch_optimizer(lr=0.01, weight_decay=0.1), tree(), grad_seq)
    assert max_rel_err(got, ref) < 1e-5
    adamw = optax.adamw(0.01, b1=0.5, b2=0.999, eps=1e-8, weight_decay=0.1)  # decoupled
    assert max_rel_err(run_optax(adamw, tree(), grad_seq), ref) > 1e-3
    nesterov = optax.chain(
        optax.add_decayed_weights(0.1),
        optax.scale_by_adam(b1=0.5, b2=0.999, eps=1e-8, mu_dtype=None, nesterov=True),
        optax.scale(-0.01),
    )
    assert max_rel_err(run_optax(nesterov, tree(), grad_seq), ref) > 1e-3


def test_defaults_are_the_reference_hyperparameters():
    p = {"w": jnp.ones((2,))}
    g = {"w": jnp.array([1.0, -1.0])}
    tx = optim.arch_optimizer()
    u, _ = tx.update(g, tx.init(p), p)
    # Step 1 of Adam moves every entry by lr (sign of the decayed gradient), up to eps.
    np.testing.assert_allclose(u["w"], [-3e-4, 3e-4], rtol=1e-4)
    tx = optim.weight_optimizer(0.025)
    u, _ = tx.update(g, tx.init(p), p)
    np.testing.assert_allclose(u["w"], -0.025 * (g["w"] + 3e-4), rtol=1e-6)
