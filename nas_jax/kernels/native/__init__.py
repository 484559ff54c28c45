"""Native XLA:CPU kernels as XLA FFI custom calls: the depthwise convolution, and DARTS's
ReLU - depthwise - pointwise block fused into one call (`sep`, with its VJP `sep_grad`).

`depthwise.cc` is compiled on first use with the system C++ compiler ($CXX, else
`c++`) against the FFI headers jaxlib ships (`jax.ffi.include_dir()`), for this CPU
(-march=native), into a cache keyed by the source, the flags, the compiler, jaxlib and
the CPU: $NAS_JAX_NATIVE_CACHE, else $XDG_CACHE_HOME/nas_jax/native, else
~/.cache/nas_jax/native. The library is written to a temporary name and renamed, so
concurrent first uses (pytest -n) never load a half-written file. Without a working
compiler `available()` is False, the reason is logged once, and
`nas_jax.kernels.depthwise` falls back to its pure-JAX CPU path. $NAS_JAX_NATIVE=0
disables the kernels.

The three ops are bilinear and each one's VJP is made of the other two:
  forward(x, w)       = F(x, w)          (out = depthwise conv)
  input_grad(ct, w)   = F_x^T ct         (dx)
  kernel_grad(x, ct)  = F_w^T ct         (dw)
with <ct, F(x, w)> = <x, input_grad(ct, w)> = <w, kernel_grad(x, ct)>, so gradients of
gradients (the exact second-order DARTS step) work to any order. Under `vmap` the calls
take the batch as leading axes (vmap_method="expand_dims"; an unbatched operand is
broadcast inside the kernel, not materialized). float32 only.

Single-threaded per call: XLA:CPU runs independent calls (a cell's edges) on its
threads. Numbers: experiments/results/README.md ("Native CPU kernels").
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import jax
import numpy as np

ENV_VAR = "NAS_JAX_NATIVE"
CACHE_ENV_VAR = "NAS_JAX_NATIVE_CACHE"
SOURCE = Path(__file__).with_name("depthwise.cc")
FLAGS = ("-O3", "-march=native", "-std=c++20", "-shared", "-fPIC") + (
    # GCC and Clang may otherwise prefer 256-bit vectors on AVX-512 CPUs.
    ("-mprefer-vector-width=512",) if platform.machine().lower() in ("x86_64", "amd64") else ()
)
_TARGETS = {
    "nas_jax_depthwise_forward": "NasJaxDepthwiseForward",
    "nas_jax_depthwise_input_grad": "NasJaxDepthwiseInputGrad",
    "nas_jax_depthwise_kernel_grad": "NasJaxDepthwiseKernelGrad",
    "nas_jax_sep_forward": "NasJaxSepForward",
    "nas_jax_sep_backward": "NasJaxSepBackward",
}
_log = logging.getLogger(__name__)


def _cache_dir() -> Path:
    if os.environ.get(CACHE_ENV_VAR):
        return Path(os.environ[CACHE_ENV_VAR])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "nas_jax" / "native"


def _cpu_id() -> str:
    """The CPU's model and flags (what -march=native compiles for)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    keep = [ln for ln in info.splitlines() if ln.startswith(("model name", "flags", "Features"))]
    return "\n".join(sorted(set(keep))) or platform.machine()


def _compiler() -> str | None:
    return shutil.which(os.environ.get("CXX") or "c++")


def _build(cxx: str) -> Path:
    """Path of the compiled library for this source/compiler/jaxlib/CPU, compiled if new."""
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=True).stdout
    key = hashlib.sha256(
        "\0".join(
            [SOURCE.read_text(), " ".join(FLAGS), version, jax.__version__, _cpu_id()]
        ).encode()
    ).hexdigest()[:16]
    out = _cache_dir() / f"depthwise-{key}.so"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
    os.close(fd)
    try:
        cmd = [cxx, *FLAGS, f"-I{jax.ffi.include_dir()}", str(SOURCE), "-o", tmp]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-4000:]}")
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return out


@functools.cache
def status() -> str:
    """'built' once the kernels are compiled, loaded and registered (once per process),
    else why not: 'disabled: NAS_JAX_NATIVE=0' or 'unavailable: <reason>'."""
    if os.environ.get(ENV_VAR, "1") == "0":
        return f"disabled: {ENV_VAR}=0"
    cxx = _compiler()
    if cxx is None:
        reason = f"no C++ compiler ({os.environ.get('CXX') or 'c++'})"
        _log.warning("nas_jax.kernels.native: %s; using the pure-JAX path", reason)
        return f"unavailable: {reason}"
    try:
        lib = ctypes.cdll.LoadLibrary(str(_build(cxx)))
    except (OSError, RuntimeError, subprocess.SubprocessError) as e:
        _log.warning("nas_jax.kernels.native: build failed, using the pure-JAX path: %s", e)
        last = [line for line in str(e).splitlines() if line.strip()][-1:] or [type(e).__name__]
        return f"unavailable: build failed: {last[0][:200]}"
    for target, symbol in _TARGETS.items():
        capsule = jax.ffi.pycapsule(getattr(lib, symbol))
        jax.ffi.register_ffi_target(target, capsule, platform="cpu")
    return "built"


def available() -> bool:
    """True when the kernels are compiled, loaded and registered (see `status`)."""
    return status() == "built"


def _call(target, shape, args, stride, padding, dilation):
    """One custom call on `args`; `shape` is the result's shape, or a list of them."""
    if not available():
        raise RuntimeError(
            f"nas_jax.kernels.native kernels are not available ({status()}); use "
            "nas_jax.kernels.depthwise_conv, which falls back"
        )
    many = isinstance(shape, list)
    results = [jax.ShapeDtypeStruct(tuple(s), np.float32) for s in (shape if many else [shape])]
    return jax.ffi.ffi_call(target, results if many else results[0], vmap_method="expand_dims")(
        *args, stride=np.int64(stride), padding=np.int64(padding), dilation=np.int64(dilation)
    )


def _out_shape(x_shape, w_shape, stride, padding, dilation):
    n, h, w, c = x_shape
    kh, kw = w_shape[:2]
    ho = (h + 2 * padding - dilation * (kh - 1) - 1) // stride + 1
    wo = (w + 2 * padding - dilation * (kw - 1) - 1) // stride + 1
    return (n, ho, wo, c)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def forward(x, w, stride, padding, dilation):
    """out = depthwise conv of x (N, H, W, C) with w (KH, KW, 1, C); float32."""
    shape = _out_shape(x.shape, w.shape, stride, padding, dilation)
    return _call("nas_jax_depthwise_forward", shape, (x, w), stride, padding, dilation)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def input_grad(ct, w, x_shape, stride, padding, dilation):
    """dx of `forward` for output cotangent ct; x_shape is the input's (N, H, W, C)."""
    return _call("nas_jax_depthwise_input_grad", x_shape, (ct, w), stride, padding, dilation)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def kernel_grad(x, ct, w_shape, stride, padding, dilation):
    """dw of `forward` for output cotangent ct; w_shape is the kernel's (KH, KW, 1, C)."""
    return _call("nas_jax_depthwise_kernel_grad", w_shape, (x, ct), stride, padding, dilation)


def _forward_fwd(x, w, stride, padding, dilation):
    return forward(x, w, stride, padding, dilation), (x, w)


def _forward_bwd(stride, padding, dilation, res, ct):
    x, w = res
    return (
        input_grad(ct, w, x.shape, stride, padding, dilation),
        kernel_grad(x, ct, w.shape, stride, padding, dilation),
    )


def _input_grad_fwd(ct, w, x_shape, stride, padding, dilation):
    return input_grad(ct, w, x_shape, stride, padding, dilation), (ct, w)


def _input_grad_bwd(x_shape, stride, padding, dilation, res, g):
    ct, w = res  # g is a cotangent of dx, shaped like x
    return (
        forward(g, w, stride, padding, dilation),
        kernel_grad(g, ct, w.shape, stride, padding, dilation),
    )


def _kernel_grad_fwd(x, ct, w_shape, stride, padding, dilation):
    return kernel_grad(x, ct, w_shape, stride, padding, dilation), (x, ct)


def _kernel_grad_bwd(w_shape, stride, padding, dilation, res, g):
    x, ct = res  # g is a cotangent of dw, shaped like the kernel
    return (
        input_grad(ct, g, x.shape, stride, padding, dilation),
        forward(x, g, stride, padding, dilation),
    )


forward.defvjp(_forward_fwd, _forward_bwd)
input_grad.defvjp(_input_grad_fwd, _input_grad_bwd)
kernel_grad.defvjp(_kernel_grad_fwd, _kernel_grad_bwd)


# ReLU - depthwise - pointwise in one pass per image (DARTS's SepConv halves and DilConv,
# before their BN). The backward recomputes the depthwise output instead of saving it.


def sep_reference(x, w, pw, stride, padding, dilation):
    """pw(dw(relu(x))) from the separate ops: what `sep` computes, and its higher-order
    derivatives. pw: (C, M)."""
    t = forward(jax.nn.relu(x), w, stride, padding, dilation)
    n, h, wd, c = t.shape
    return (t.reshape(n * h * wd, c) @ pw).reshape(n, h, wd, pw.shape[1])


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def sep(x, w, pw, stride, padding, dilation):
    """pw(dw(relu(x))): x (N, H, W, C), w (KH, KW, 1, C), pw (C, M) -> (N, Ho, Wo, M)."""
    n, ho, wo, _ = _out_shape(x.shape, w.shape, stride, padding, dilation)
    shape = (n, ho, wo, pw.shape[1])
    return _call("nas_jax_sep_forward", shape, (x, w, pw), stride, padding, dilation)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6))
def sep_grad(x, w, pw, ct, stride, padding, dilation):
    """(dx, dw, dpw) of `sep` for output cotangent ct, in one pass per image."""
    shapes = [x.shape, w.shape, pw.shape]
    return tuple(_call("nas_jax_sep_backward", shapes, (x, w, pw, ct), stride, padding, dilation))


def _sep_fwd(x, w, pw, stride, padding, dilation):
    return sep(x, w, pw, stride, padding, dilation), (x, w, pw)


def _sep_bwd(stride, padding, dilation, res, ct):
    return sep_grad(*res, ct, stride, padding, dilation)


def _sep_grad_fwd(x, w, pw, ct, stride, padding, dilation):
    return sep_grad(x, w, pw, ct, stride, padding, dilation), (x, w, pw, ct)


def _sep_grad_bwd(stride, padding, dilation, res, g):
    # Second order (e.g. the exact DARTS alpha gradient): through the separate ops.
    def grads(x, w, pw, ct):
        f = lambda *a: sep_reference(*a, stride, padding, dilation)
        return jax.vjp(f, x, w, pw)[1](ct)

    return jax.vjp(grads, *res)[1](tuple(g))


sep.defvjp(_sep_fwd, _sep_bwd)
sep_grad.defvjp(_sep_grad_fwd, _sep_grad_bwd)


def _macs(target: str, ins, outs) -> int:
    """Multiply-adds of one of our custom calls from its operand and result shapes
    (vmap axes included): the forward's k*k per output element, the same for each
    gradient, plus the pointwise C*M per pixel in the fused op (whose backward also
    recomputes the depthwise output)."""
    prod = lambda shape: int(np.prod(shape, dtype=np.int64))
    if target in ("nas_jax_depthwise_forward", "nas_jax_depthwise_input_grad"):
        kh, kw = ins[1][-4:-2]
        return kh * kw * prod(ins[0] if target.endswith("grad") else outs[0])
    if target == "nas_jax_depthwise_kernel_grad":
        kh, kw = outs[0][-4:-2]
        return kh * kw * prod(ins[1])
    kh, kw, _, c = ins[1][-4:]
    m = ins[2][-1]
    if target == "nas_jax_sep_forward":
        return prod(outs[0][:-1]) * (kh * kw * c + c * m)
    if target == "nas_jax_sep_backward":
        return prod(ins[3][:-1]) * (3 * kh * kw * c + 2 * c * m)
    return 0


def flops(jaxpr) -> float:
    """Flops of the nas_jax custom calls in a (Closed)Jaxpr, nested jaxprs included (scan
    bodies times their length, the costliest branch of a cond): the work XLA's cost
    analysis does not see. Other ops count 0."""
    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
    total = 0.0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "ffi_call" and eqn.params.get("target_name") in _TARGETS:
            ins = [v.aval.shape for v in eqn.invars]
            outs = [v.aval.shape for v in eqn.outvars]
            total += 2.0 * _macs(eqn.params["target_name"], ins, outs)
            continue
        for name, value in eqn.params.items():
            values = value if isinstance(value, (list, tuple)) else [value]
            subs = [v for v in values if hasattr(getattr(v, "jaxpr", v), "eqns")]
            if not subs:
                continue
            counts = [flops(v) for v in subs]
            if eqn.primitive.name == "cond" and name == "branches":
                total += max(counts)
            elif eqn.primitive.name == "scan":
                total += sum(counts) * eqn.params["length"]
            else:
                total += sum(counts)
    return total
