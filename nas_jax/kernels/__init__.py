"""The CPU performance layer, behind the functions the model code calls.

The ops (`nas_jax.ops`), supernets and networks are written as the paper's ops; what makes
them fast on XLA:CPU lives here, each piece computing what the plain formulation does:

  depthwise_conv, native_active  the depthwise conv per the `depthwise` setting (depthwise.py)
  relu_dw_pw, DepthwiseConv      ReLU - depthwise - pointwise, one native call on CPU (layers.py)
  Conv                           nn.Conv with 1x1 convolutions as matmuls (layers.py)
  materialize                    the fusion barrier at every cell node (fusion.py)
  avg_pool_3x3, max_pool_3x3     pools as sums and maxima of 9 strided slices (pooling.py)
  configure_allocator            glibc keeps XLA's freed buffers (allocator.py)
  native                         the C++ XLA FFI kernels, built on first use (native/)
  configure, validate, describe  the backend settings: config, else $NAS_JAX_* override,
                                 else the backend's default; recorded (settings.py)

Numbers and what was tried: experiments/results/README.md.
"""

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
    configured,
    describe,
    validate,
)

__all__ = [
    "Conv",
    "DepthwiseConv",
    "Settings",
    "active",
    "avg_pool_3x3",
    "configure",
    "configure_allocator",
    "configured",
    "depthwise_conv",
    "describe",
    "materialize",
    "max_pool_3x3",
    "native",
    "native_active",
    "relu_dw_pw",
    "validate",
]
