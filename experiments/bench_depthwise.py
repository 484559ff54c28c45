"""Time every `nas_jax.kernels.depthwise_conv` impl on the shapes the DARTS supernets use.

Forward and forward+backward (grads w.r.t. input and kernel), jitted, median of
`--repeats` timed runs after warm-up. Prints one table (case x impl, ms).

    /work/venv/bin/python experiments/bench_depthwise.py
    /work/venv/bin/python experiments/bench_depthwise.py --nets search --kernels 3 \
        --impls xla shift --json /tmp/dw.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

# Runnable as a plain script from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nas_jax import kernels
from nas_jax.kernels.depthwise import IMPLS, depthwise_conv

# (net, C, H=W) per cell stage; the batch size comes from --batch-{search,eval}.
SHAPES = {
    "search": [(16, 32), (32, 16), (64, 8)],
    "eval": [(36, 32), (72, 16), (144, 8)],
}


def _time(fn, args, repeats: int, budget_s: float) -> float:
    """Median ms over 3..`repeats` runs (fewer when slow) after a compiling warm-up."""
    jax.block_until_ready(fn(*args))
    times = []
    while len(times) < repeats and (len(times) < 3 or sum(times) < budget_s):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def bench_case(impl, n, c, hw, k, stride, dilation, dtype, repeats, budget_s):
    padding = dilation * (k - 1) // 2  # SepConv: (k-1)//2; DilConv: 2 (k=3), 4 (k=5)
    kx, kw_, kc = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(kx, (n, hw, hw, c), dtype)
    w = jax.random.normal(kw_, (k, k, 1, c), dtype)

    def f(x, w):
        return depthwise_conv(x, w, stride=stride, padding=padding, dilation=dilation, impl=impl)

    out_shape = jax.eval_shape(f, x, w).shape
    ct = jax.random.normal(kc, out_shape, dtype)
    fwd = jax.jit(f)
    fwd_bwd = jax.jit(jax.grad(lambda x, w: jnp.vdot(f(x, w), ct), argnums=(0, 1)))
    return (
        _time(fwd, (x, w), repeats, budget_s),
        _time(fwd_bwd, (x, w), repeats, budget_s),
    )


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-search", type=int, default=64)
    p.add_argument("--batch-eval", type=int, default=96)
    p.add_argument("--nets", nargs="+", default=["search", "eval"], choices=list(SHAPES))
    p.add_argument("--kernels", nargs="+", type=int, default=[3, 5])
    p.add_argument("--dilations", nargs="+", type=int, default=[1, 2])
    p.add_argument("--strides", nargs="+", type=int, default=[1, 2])
    p.add_argument("--impls", nargs="+", default=list(IMPLS), choices=list(IMPLS))
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--repeats", type=int, default=7, help="max timed runs")
    p.add_argument("--budget-s", type=float, default=0.5, help="stop after 3 runs + this")
    p.add_argument("--max-dense-c", type=int, default=64, help="skip 'dense' above this C")
    p.add_argument("--json", help="write results to this path")
    args = p.parse_args()
    dtype = jnp.dtype(args.dtype)

    results = []
    header = f"{'case':<34}" + "".join(f"{i + ' fwd':>15}{i + ' f+b':>15}" for i in args.impls)
    print(f"jax {jax.__version__} backend={jax.default_backend()} cpus={os.cpu_count()}")
    print(header)
    for net in args.nets:
        n = args.batch_search if net == "search" else args.batch_eval
        for (c, hw), k, d, s in itertools.product(
            SHAPES[net], args.kernels, args.dilations, args.strides
        ):
            case = f"{net} N{n} C{c} {hw}x{hw} k{k} d{d} s{s}"
            row = f"{case:<34}"
            for impl in args.impls:
                if impl == "dense" and c > args.max_dense_c:
                    row += f"{'-':>15}{'-':>15}"
                    continue
                fwd, fb = bench_case(impl, n, c, hw, k, s, d, dtype, args.repeats, args.budget_s)
                results.append(
                    {"net": net, "n": n, "c": c, "hw": hw, "k": k, "dilation": d,
                     "stride": s, "impl": impl, "dtype": args.dtype, "fwd_ms": fwd,
                     "fwd_bwd_ms": fb}
                )  # fmt: skip
                row += f"{fwd:>15.2f}{fb:>15.2f}"
            print(row, flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            # Each impl is passed explicitly; the settings record the rest (the kernels' build).
            meta = {"jax": jax.__version__, "backend": jax.default_backend(),
                    "kernels": kernels.describe()}  # fmt: skip
            json.dump({**meta, "cpus": os.cpu_count(), "results": results}, fh, indent=1)


if __name__ == "__main__":
    main()
