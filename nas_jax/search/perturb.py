"""SDARTS perturbations of the mixing weights (SPEC 6.5).

Both act on probabilities (the clean mixing weights) and touch only undecided rows
of kept edges: decided rows stay one-hot and pruned rows zero. The reference
perturbs every row and relies on re-projection inside its forward to undo it on
decided/pruned rows (SPEC 7.5, pitfall 6); masking gives the same weights.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from nas_jax import arch

Weights = dict[str, jax.Array]
NOISES = ("uniform", "gaussian")


def sdarts_epsilon(epoch: int, epochs: int, eps_max: float = 0.3, eps_min: float = 0.03) -> float:
    """Linear per-epoch ramp eps_min -> eps_max (0-based epoch; 0.03 -> 0.2946 over 50)."""
    return eps_min + (eps_max - eps_min) * epoch / epochs


def perturbable_rows(state: arch.ArchState) -> dict[str, jax.Array]:
    """bool[E] per cell type: the rows SDARTS may perturb (undecided and kept)."""
    return {t: (state.decided_op[t] < 0) & state.edge_kept[t] for t in state.decided_op}


def clip_probs(p_ExK: jax.Array) -> jax.Array:
    """The reference's `clip`: per row, clamp to [0, 1]; an all-zero row becomes
    one-hot at its pre-clamp argmax; divide by the row sum."""
    top_E = jnp.argmax(p_ExK, axis=-1)
    p_ExK = jnp.clip(p_ExK, 0.0, 1.0)
    empty_E = jnp.sum(p_ExK, axis=-1) == 0
    onehot_ExK = jax.nn.one_hot(top_E, p_ExK.shape[-1], dtype=p_ExK.dtype)
    p_ExK = jnp.where(empty_E[:, None], onehot_ExK, p_ExK)
    return p_ExK / jnp.sum(p_ExK, axis=-1, keepdims=True)


def _where_rows(rows: dict[str, jax.Array], new: Weights, old: Weights) -> Weights:
    return {t: jnp.where(rows[t][:, None], new[t], old[t]) for t in old}


def _draw(key: jax.Array, weights: Weights, epsilon, noise: str) -> Weights:
    """Per-entry noise of scale epsilon, one key per cell type (sorted names)."""
    if noise not in NOISES:
        raise ValueError(f"Unknown SDARTS noise {noise!r}; accepted: {', '.join(NOISES)}")
    names = sorted(weights)
    out = {}
    for t, k in zip(names, jax.random.split(key, len(names))):
        w = weights[t]
        if noise == "uniform":
            out[t] = jax.random.uniform(k, w.shape, w.dtype, -epsilon, epsilon)
        else:
            out[t] = epsilon * jax.random.normal(k, w.shape, w.dtype)
    return out


def random_smoothing(
    weights: Weights,
    rows: dict[str, jax.Array],
    key: jax.Array,
    epsilon,
    noise: str = "uniform",
) -> Weights:
    """SDARTS-RS: p <- clip(p + noise) on `rows`. 'uniform' is U(-eps, eps) as in the
    code; 'gaussian' is N(0, eps^2) as the paper's appendix says (SPEC 6.5 [DIFF])."""
    n = _draw(key, weights, epsilon, noise)
    noisy = {t: clip_probs(w + n[t]) for t, w in weights.items()}
    return _where_rows(rows, noisy, weights)


def pgd_linf(
    loss_fn: Callable[[Weights], jax.Array],
    weights: Weights,
    rows: dict[str, jax.Array],
    key: jax.Array,
    epsilon,
    steps: int = 7,
) -> tuple[Weights, dict[str, jax.Array]]:
    """SDARTS-ADV: sign-gradient ascent of `loss_fn` on the probabilities of `rows`.

    Random start clip(p0 + U(-eps, eps)); `steps` times p <- p + (2 eps / steps) *
    sign(grad); p <- p0 + clamp(p - p0, -eps, eps); p <- clip(p). Reverts to p0 when
    the attack lowered the loss. As in the reference, the final clip renormalises
    rows, so p can end slightly outside the eps-ball around p0.
    """
    p0 = weights

    def project(p):
        moved = {t: clip_probs(p0[t] + jnp.clip(p[t] - p0[t], -epsilon, epsilon)) for t in p0}
        return _where_rows(rows, moved, p0)

    loss_before = loss_fn(p0)
    start = _draw(key, p0, epsilon, "uniform")
    p = _where_rows(rows, {t: clip_probs(p0[t] + start[t]) for t in p0}, p0)
    step_size = 2.0 * epsilon / steps

    def ascend(_, p):
        g = jax.grad(loss_fn)(p)
        return project({t: p[t] + step_size * jnp.sign(g[t]) for t in p})

    p = jax.lax.fori_loop(0, steps, ascend, p)
    loss_after = loss_fn(p)
    revert = loss_before > loss_after
    p = {t: jnp.where(revert, p0[t], p[t]) for t in p0}
    metrics = {
        "adv_loss_before": loss_before,
        "adv_loss_after": loss_after,
        "adv_reverted": revert.astype(jnp.float32),
    }
    return p, metrics
