"""The CPU performance layer: what the model code calls for depthwise convolutions,
fusion barriers, pools and the host allocator."""

from nas_jax.kernels import native
from nas_jax.kernels.allocator import configure_allocator
from nas_jax.kernels.depthwise import depthwise_conv, native_active
from nas_jax.kernels.fusion import materialize
from nas_jax.kernels.pooling import avg_pool_3x3, max_pool_3x3

__all__ = [
    "avg_pool_3x3",
    "configure_allocator",
    "depthwise_conv",
    "materialize",
    "max_pool_3x3",
    "native",
    "native_active",
]
