"""Host allocator settings for XLA:CPU: keep freed memory for the next step.

XLA:CPU allocates each execution's temporary buffer (1.27 GB for the NB201 weight
step at batch 64) with posix_memalign from a worker thread. glibc serves a request
that large with a fresh mmap and unmaps it on free, so every step touches 1.2 GB of
new pages: 309,000 minor page faults and 0.5 s of kernel time per step on this
project's 2-core machine (1,042 ms per step; 851 ms after `configure_allocator`, with
no page faults). A worker thread's arena cannot grow past 64 MB, and there glibc falls
back to mmap whatever M_MMAP_MAX says, so all threads must share the main arena.

`configure_allocator()` sets, through mallopt: one arena (M_ARENA_MAX=1), no mmap for
large blocks (M_MMAP_MAX=0) and no trimming of the heap top (M_TRIM_THRESHOLD=2 GiB-1),
so the heap grows to the peak once and is reused. The cost: the process keeps its
peak memory until it exits. Call it before the first JAX computation (the entry points
`nas_jax.main` and `nas_jax.bench` do); calling it later still helps allocations made
afterwards. It does nothing off glibc, or when $NAS_JAX_MALLOC=default.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

ENV_VAR = "NAS_JAX_MALLOC"
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
_SETTINGS = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 2**31 - 1))
_done = False


def configure_allocator() -> bool:
    """Apply the settings once; True when they are in effect."""
    global _done
    if _done:
        return True
    mode = os.environ.get(ENV_VAR, "reuse")
    if mode not in ("reuse", "default"):
        raise ValueError(f"${ENV_VAR}={mode!r} is not accepted; accepted: reuse, default")
    if mode == "default" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    _done = all(mallopt(param, value) == 1 for param, value in _SETTINGS)
    return _done
