"""Optimizers of the search phase with PyTorch's update rules (SPEC 6.2, 14).

Weights: torch SGD(momentum=0.9, weight_decay=3e-4) after clip_grad_norm_(5):
  g <- clip(g); g <- g + wd * w; v <- mu * v + g (first step v = g); w <- w - lr * v.
Alphas: torch Adam(betas=(0.5, 0.999), weight_decay=1e-3), i.e. coupled L2 added to the
gradient before the moments (not AdamW).

One difference from torch remains: `clip_grad_norm_` scales by max_norm / (norm + 1e-6),
optax by max_norm / norm, a relative 1e-6 / norm change of clipped gradients.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax.numpy as jnp
import optax

Schedule = Callable[[jnp.ndarray], jnp.ndarray]


def weight_optimizer(
    lr_schedule: float | Schedule,
    *,
    momentum: float = 0.9,
    weight_decay: float = 3e-4,
    grad_clip: float = 5.0,
) -> optax.GradientTransformation:
    """Clip, then coupled L2 on all params, then heavy-ball momentum, then -lr."""
    # Order matters: the clip sees the raw loss gradient and the decay is added after it,
    # inside the momentum buffer, as in torch's SGD (SPEC 14).
    return optax.chain(
        optax.clip_by_global_norm(grad_clip),
        optax.add_decayed_weights(weight_decay),
        optax.trace(decay=momentum, nesterov=False),
        optax.scale_by_learning_rate(lr_schedule),
    )


def arch_optimizer(
    lr: float = 3e-4,
    b1: float = 0.5,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 1e-3,
) -> optax.GradientTransformation:
    """torch Adam with weight_decay: coupled L2, bias-corrected moments, -lr."""
    return optax.chain(
        optax.add_decayed_weights(weight_decay),
        optax.scale_by_adam(b1=b1, b2=b2, eps=eps),
        optax.scale(-lr),
    )


def cosine_epoch_schedule(
    base_lr: float, min_lr: float, epochs: int, steps_per_epoch: int
) -> Schedule:
    """Cosine annealing stepped once per epoch (torch CosineAnnealingLR, T_max=epochs).

    lr(step) = min + (base - min) * (1 + cos(pi * e / epochs)) / 2, e = step // steps_per_epoch.
    Past `epochs` the cosine rises again, as torch's closed form does.
    """
    if epochs <= 0 or steps_per_epoch <= 0:
        raise ValueError(f"epochs={epochs} and steps_per_epoch={steps_per_epoch} must be > 0")

    def schedule(count):
        epoch = jnp.asarray(count) // steps_per_epoch
        cos = jnp.cos(math.pi * epoch.astype(jnp.float32) / epochs)
        return min_lr + (base_lr - min_lr) * (1.0 + cos) / 2.0

    return schedule


def constant_schedule(lr: float) -> Schedule:
    """A constant learning rate (e.g. the PT tuning phase, SPEC 7.5)."""
    return optax.constant_schedule(lr)
