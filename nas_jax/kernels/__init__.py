"""The CPU performance layer: what the model code calls for depthwise convolutions,
fusion barriers, pools and the host allocator, and the backend settings that choose
between their implementations."""

from nas_jax.kernels import native
from nas_jax.kernels.depthwise import depthwise_conv, native_active
from nas_jax.kernels.fusion import materialize
from nas_jax.kernels.layers import Conv, DepthwiseConv, relu_dw_pw
from nas_jax.kernels.pooling import avg_pool_3x3, max_pool_3x3
from nas_jax.kernels.settings import (
    Settings,
    active,
    configure,
    configure_allocator,
    describe,
)

__all__ = [
    "Conv",
    "DepthwiseConv",
    "Settings",
    "active",
    "avg_pool_3x3",
    "configure",
    "configure_allocator",
    "depthwise_conv",
    "describe",
    "materialize",
    "max_pool_3x3",
    "native",
    "native_active",
    "relu_dw_pw",
]
