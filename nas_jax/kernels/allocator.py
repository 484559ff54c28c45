"""Host allocator settings for XLA:CPU: keep freed memory for the next step.

XLA:CPU allocates each execution's temporary buffer (over a GB for the supernet steps)
with posix_memalign from a worker thread. glibc serves a request that large with a
fresh mmap and unmaps it on free, so every step faults in all of its pages again. A
worker thread's arena cannot grow past 64 MB, and there glibc falls back to mmap
whatever M_MMAP_MAX says, so all threads must share the main arena.

`apply()` sets, through mallopt: one arena (M_ARENA_MAX=1), no mmap for large blocks
(M_MMAP_MAX=0) and no trimming of the heap top (M_TRIM_THRESHOLD=2 GiB-1), so the heap
grows to the peak once and is reused. The cost: the process keeps its peak memory until
it exits. Whether to apply it is the `malloc` setting (`nas_jax.kernels.settings`).
Numbers: experiments/results/README.md ("Host allocator").
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
_SETTINGS = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 2**31 - 1))
_done = False


@functools.cache
def _mallopt():
    """glibc's mallopt, or the reason there is none."""
    if not sys.platform.startswith("linux"):
        return f"not glibc ({sys.platform})"
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt)
        return "not glibc (no mallopt)"
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return mallopt


def unsupported() -> str | None:
    """Why the settings cannot be applied here, or None on Linux with glibc."""
    found = _mallopt()
    return found if isinstance(found, str) else None


def applied() -> bool:
    return _done


def apply() -> bool:
    """Apply the settings once (later calls do nothing); True when they are in effect.
    Call it before the first JAX computation; later still helps later allocations."""
    global _done
    if not _done and unsupported() is None:
        mallopt = _mallopt()
        _done = all(mallopt(param, value) == 1 for param, value in _SETTINGS)
    return _done
