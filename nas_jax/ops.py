"""Candidate operations (SPEC 3), Flax Linen, NHWC.

Every op is `Op(C, stride, affine)(x, train)`, C in = C out. `train` selects batch
statistics (True) or running averages (False) in BatchNorm; whether running averages
are written back is the caller's choice (`mutable=['batch_stats']` in `apply`).
Initialisation follows PyTorch's defaults (SPEC 3.3).
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from nas_jax import kernels

# PyTorch's kaiming_uniform(a=sqrt(5)) == U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
torch_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def torch_bias_init(fan_in: int) -> Callable:
    bound = 1.0 / fan_in**0.5

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def batch_norm(affine: bool, name: str | None = None) -> nn.BatchNorm:
    # PyTorch momentum 0.1 == Flax momentum 0.9; eps 1e-5 (SPEC 3).
    return nn.BatchNorm(momentum=0.9, epsilon=1e-5, use_scale=affine, use_bias=affine, name=name)


def conv(features: int, k: int, stride: int = 1, padding: int = 0, name: str | None = None):
    # A 1x1 conv runs as a matmul (`kernels.Conv`); the parameters are nn.Conv's.
    return kernels.Conv(
        features,
        (k, k),
        strides=(stride, stride),
        padding=((padding, padding), (padding, padding)),
        use_bias=False,
        kernel_init=torch_kernel_init,
        name=name,
    )


def dense(features: int, fan_in: int, name: str | None = None) -> nn.Dense:
    return nn.Dense(
        features,
        kernel_init=torch_kernel_init,
        bias_init=torch_bias_init(fan_in),
        name=name,
    )


class ReLUConvBN(nn.Module):
    C_out: int
    k: int
    stride: int = 1
    padding: int = 0
    affine: bool = True

    @nn.compact
    def __call__(self, x, train: bool):
        x = conv(self.C_out, self.k, self.stride, self.padding)(nn.relu(x))
        return batch_norm(self.affine)(x, use_running_average=not train)


class FactorizedReduce(nn.Module):
    """Two 1x1 stride-2 convs, the second on the input shifted by one pixel."""

    C_out: int
    affine: bool = True

    @nn.compact
    def __call__(self, x, train: bool):
        if self.C_out % 2:
            raise ValueError(f"FactorizedReduce needs an even C_out, got {self.C_out}")
        x = nn.relu(x)
        a = conv(self.C_out // 2, 1, 2)(x)
        b = conv(self.C_out // 2, 1, 2)(x[:, 1:, 1:, :])
        return batch_norm(self.affine)(jnp.concatenate([a, b], -1), use_running_average=not train)


class SepConv(nn.Module):
    """Two stacked ReLU - depthwise - pointwise - BN blocks."""

    C: int
    k: int
    stride: int
    affine: bool

    @nn.compact
    def __call__(self, x, train: bool):
        p = self.k // 2
        for index, stride in enumerate((self.stride, 1)):
            x = kernels.relu_dw_pw(x, self.k, stride, p, 1, self.C, index,
                                   kernel_init=torch_kernel_init)  # fmt: skip
            x = batch_norm(self.affine)(x, use_running_average=not train)
        return x


class DilConv(nn.Module):
    """ReLU - depthwise (dilation 2) - pointwise - BN."""

    C: int
    k: int
    stride: int
    affine: bool
    dilation: int = 2

    @nn.compact
    def __call__(self, x, train: bool):
        p = self.dilation * (self.k - 1) // 2
        x = kernels.relu_dw_pw(x, self.k, self.stride, p, self.dilation, self.C, 0,
                               kernel_init=torch_kernel_init)  # fmt: skip
        return batch_norm(self.affine)(x, use_running_average=not train)


class Conv7x1_1x7(nn.Module):
    C: int
    stride: int
    affine: bool

    @nn.compact
    def __call__(self, x, train: bool):
        s = self.stride
        x = nn.relu(x)
        x = nn.Conv(
            self.C, (1, 7), (1, s), ((0, 0), (3, 3)), use_bias=False, kernel_init=torch_kernel_init
        )(x)
        x = nn.Conv(
            self.C, (7, 1), (s, 1), ((3, 3), (0, 0)), use_bias=False, kernel_init=torch_kernel_init
        )(x)
        return batch_norm(self.affine)(x, use_running_average=not train)


class Zero(nn.Module):
    stride: int = 1

    def __call__(self, x, train: bool):
        return x[:, :: self.stride, :: self.stride, :] * 0.0


class Noise(nn.Module):
    """Fresh N(0,1) with x's (strided) shape on every call, from the 'noise' RNG stream."""

    stride: int = 1

    def __call__(self, x, train: bool):
        shape = x[:, :: self.stride, :: self.stride, :].shape
        return jax.random.normal(self.make_rng("noise"), shape, x.dtype)


class Identity(nn.Module):
    def __call__(self, x, train: bool):
        return x


class Pool(nn.Module):
    kind: str  # 'max' | 'avg'
    stride: int = 1

    def __call__(self, x, train: bool):
        if self.kind == "avg":
            return kernels.avg_pool_3x3(x, self.stride)
        return kernels.max_pool_3x3(x, self.stride)


class NorConv(nn.Module):
    """NAS-Bench-201 ReLU - conv kxk - BN."""

    C: int
    k: int
    stride: int
    affine: bool

    @nn.compact
    def __call__(self, x, train: bool):
        return ReLUConvBN(self.C, self.k, self.stride, self.k // 2, self.affine)(x, train)


def _skip(C, stride, affine, name):
    return Identity(name=name) if stride == 1 else FactorizedReduce(C, affine, name=name)


OPS: dict[str, Callable[..., nn.Module]] = {
    "none": lambda C, s, a, name=None: Zero(s, name=name),
    "noise": lambda C, s, a, name=None: Noise(s, name=name),
    "avg_pool_3x3": lambda C, s, a, name=None: Pool("avg", s, name=name),
    "max_pool_3x3": lambda C, s, a, name=None: Pool("max", s, name=name),
    "skip_connect": lambda C, s, a, name=None: _skip(C, s, a, name),
    "sep_conv_3x3": lambda C, s, a, name=None: SepConv(C, 3, s, a, name=name),
    "sep_conv_5x5": lambda C, s, a, name=None: SepConv(C, 5, s, a, name=name),
    "sep_conv_7x7": lambda C, s, a, name=None: SepConv(C, 7, s, a, name=name),
    "dil_conv_3x3": lambda C, s, a, name=None: DilConv(C, 3, s, a, name=name),
    "dil_conv_5x5": lambda C, s, a, name=None: DilConv(C, 5, s, a, name=name),
    "conv_7x1_1x7": lambda C, s, a, name=None: Conv7x1_1x7(C, s, a, name=name),
    "nor_conv_1x1": lambda C, s, a, name=None: NorConv(C, 1, s, a, name=name),
    "nor_conv_3x3": lambda C, s, a, name=None: NorConv(C, 3, s, a, name=name),
    "nor_conv_7x7": lambda C, s, a, name=None: NorConv(C, 7, s, a, name=name),
}


def make_op(name: str, C: int, stride: int, affine: bool, module_name: str | None = None):
    try:
        factory = OPS[name]
    except KeyError:
        raise ValueError(f"Unknown op {name!r}; accepted: {', '.join(OPS)}") from None
    return factory(C, stride, affine, name=module_name)


def drop_path(rng: jax.Array, x_BxHxWxC: jax.Array, p) -> jax.Array:
    """Per-sample Bernoulli(1-p) mask; x / (1-p) * mask (SPEC 4.1)."""
    keep = 1.0 - p
    mask_B = jax.random.bernoulli(rng, keep, (x_BxHxWxC.shape[0],)).astype(x_BxHxWxC.dtype)
    return x_BxHxWxC / keep * mask_B[:, None, None, None]
