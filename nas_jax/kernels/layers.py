"""Flax modules over the kernels: the convolutions of the candidate ops, computed the way
XLA:CPU runs fastest, with the parameters (names, shapes, init) of the plain modules.

`Conv` is `nn.Conv` with an unpadded 1x1 convolution computed as one matmul: XLA:CPU
lowers the 1x1 conv's kernel gradient to a convolution over the batch with transposed
operands, several times slower than the matmul. `relu_dw_pw` is DARTS's ReLU -
depthwise - pointwise block, one native custom call where the C++ kernels run. Numbers:
experiments/results/README.md ("Pointwise convolutions", "Native CPU kernels").
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax.numpy as jnp

from nas_jax.kernels import native
from nas_jax.kernels.depthwise import depthwise_conv, native_active


class Conv(nn.Conv):
    """nn.Conv (same parameters, same auto-names), computing an unpadded 1x1 convolution
    as one (N*H*W, C_in) x (C_in, C_out) matmul (on the strided input if stride > 1).
    The sum is the same, so the results agree to float rounding on every backend."""

    @nn.compact
    def __call__(self, inputs):
        strides = (self.strides,) * 2 if isinstance(self.strides, int) else self.strides
        pointwise = (
            tuple(self.kernel_size) == (1, 1)
            and len(strides) == 2
            and self.padding in (((0, 0), (0, 0)), "VALID", 0)
            and self.feature_group_count == 1
            and not self.use_bias
            and self.kernel_dilation in (1, (1, 1), None)
            and self.input_dilation in (1, (1, 1), None)
            and inputs.ndim == 4
        )
        if not pointwise:
            return super().__call__(inputs)
        kernel = self.param(
            "kernel", self.kernel_init, (1, 1, inputs.shape[-1], self.features), self.param_dtype
        )
        inputs, kernel = nn.dtypes.promote_dtype(inputs, kernel, dtype=self.dtype)
        if tuple(strides) != (1, 1):
            inputs = inputs[:, :: strides[0], :: strides[1], :]
        n, h, w, c = inputs.shape
        # Accumulate low-precision products in float32, as XLA's conv does.
        acc = jnp.promote_types(inputs.dtype, jnp.float32)
        y = jnp.dot(inputs.reshape(n * h * w, c), kernel[0, 0], precision=self.precision,
                    preferred_element_type=acc)  # fmt: skip
        return y.astype(inputs.dtype).reshape(n, h, w, self.features)


class DepthwiseConv(nn.Module):
    """groups=C convolution through `depthwise_conv` (the `depthwise` setting)."""

    k: int
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    kernel_init: Callable = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self, x_BxHxWxC):
        c = x_BxHxWxC.shape[-1]
        kernel = self.param("kernel", self.kernel_init, (self.k, self.k, 1, c))
        return depthwise_conv(
            x_BxHxWxC,
            kernel.astype(x_BxHxWxC.dtype),
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
        )


class _Kernel(nn.Module):
    """Only the 'kernel' parameter of a conv module (same init, shape and name)."""

    shape: tuple[int, ...]
    kernel_init: Callable

    @nn.compact
    def __call__(self):
        return self.param("kernel", self.kernel_init, self.shape)


def relu_dw_pw(x, k: int, stride: int, padding: int, dilation: int, C_out: int, index: int,
               *, kernel_init: Callable):  # fmt: skip
    """ReLU - depthwise - pointwise (bias-free 1x1) conv, inside a compact module, with
    the parameters `DepthwiseConv_{index}/kernel` and `Conv_{index}/kernel` (Flax's
    auto-names in SepConv and DilConv), both drawn from `kernel_init`. Where the C++
    kernels run (`native_active`) the three ops are one custom call (`native.sep`: the
    depthwise output never leaves the cache); elsewhere they are the separate modules."""
    if not native_active(x.dtype):
        x = DepthwiseConv(k, stride, padding, dilation, kernel_init,
                          name=f"DepthwiseConv_{index}")(nn.relu(x))  # fmt: skip
        return Conv(C_out, (1, 1), strides=(1, 1), padding=((0, 0), (0, 0)), use_bias=False,
                    kernel_init=kernel_init, name=f"Conv_{index}")(x)  # fmt: skip
    c = x.shape[-1]
    dw = _Kernel((k, k, 1, c), kernel_init, name=f"DepthwiseConv_{index}")()
    pw = _Kernel((1, 1, c, C_out), kernel_init, name=f"Conv_{index}")()
    return native.sep(x, dw, pw[0, 0], stride, padding, dilation)
