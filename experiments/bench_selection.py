"""Time PT scoring on the current backend: all op removals of an edge in one vmapped
call vs chunks (`lax.map`) vs a Python loop of single-variant passes.

Each row: first-call seconds (trace + compile + one pass) and the median seconds per
scoring pass of `--batches` batches after that, for the K variants of one edge.
Synthetic uint8 data; the numbers measure compute only. Each row prints when it is done,
after its place (i/N) and its whole wall time.

    PYTHONPATH=. /work/venv/bin/python experiments/bench_selection.py            # tiny, CPU
    PYTHONPATH=. /work/venv/bin/python experiments/bench_selection.py --space s5 \
        --C 16 --layers 8 --batch 64 --batches 20 --chunks 0,4,1 --loop
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--space", default="s5")
    p.add_argument("--C", type=int, default=4)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--nb201_cells", type=int, default=1)
    p.add_argument("--image", type=int, default=8)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--batches", type=int, default=4, help="batches per scoring pass")
    p.add_argument("--chunks", default="0,2", help="score_chunk values; 0 = vmap all")
    p.add_argument("--loop", action="store_true", help="also time K single-variant passes")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", default="")
    a = p.parse_args()

    from nas_jax import kernels

    settings = kernels.configure({})  # as the entry points do: allocator first, recorded
    import jax
    import jax.numpy as jnp
    import numpy as np

    from nas_jax import arch, spaces, supernet
    from nas_jax.init import init_variables
    from nas_jax.selection import scoring

    space = spaces.get_space(a.space)
    model = supernet.build_supernet(space, C=a.C, layers=a.layers, nb201_cells=a.nb201_cells)
    t = space.cell_types[0]
    state = arch.init_arch_state(jax.random.key(0), space)
    w = arch.mixing_weights(state)
    x0 = jnp.zeros((2, a.image, a.image, 3))
    v = init_variables(model, jax.random.key(0), x0, w, train=True)
    n = a.batch * a.batches
    rng = np.random.default_rng(0)
    vx = jnp.asarray(rng.integers(0, 256, (n, a.image, a.image, 3), dtype=np.uint8))
    vy = jnp.asarray(rng.integers(0, 10, n).astype(np.int32))
    protocol = scoring.DataProtocol(a.batch, (0.5,) * 3, (0.25,) * 3, pad=a.image // 8)
    split = (vx, vy)
    K = space.num_ops

    def timed(fn):
        t0 = time.perf_counter()
        fn(0)
        first = time.perf_counter() - t0
        runs = []
        for i in range(a.repeats):
            t0 = time.perf_counter()
            fn(i + 1)
            runs.append(time.perf_counter() - t0)
        return first, statistics.median(runs)

    head = f"{a.space} C={a.C} layers={a.layers} batch={a.batch} x{a.batches} K={K}"
    print(f"{head} on {jax.devices()[0].platform}", flush=True)
    chunks = [int(c) for c in a.chunks.split(",")]
    n = len(chunks) + a.loop
    rows = []

    def add(mode, fn):
        t0 = time.perf_counter()
        first, per_pass = timed(fn)
        rows.append({"mode": mode, "first_s": first, "pass_s": per_pass})
        place, wall = f"{len(rows)}/{n}", time.perf_counter() - t0
        print(f"  {mode:<22} first call {first:7.2f} s   pass {per_pass:7.3f} s   "
              f"[{place}, {wall:.1f} s]", flush=True)  # fmt: skip

    for chunk in chunks:
        sc = scoring.Scorer(model, protocol, chunk=chunk)
        fn = lambda i, sc=sc: sc.score_ops(v, w, t, 1, split, jax.random.key(i), a.batches)
        add(f"vmap chunk={chunk or K}", fn)
    if a.loop:
        sc = scoring.Scorer(model, protocol)
        variants = [arch.remove_op(w, t, 1, k) for k in range(K)]

        def loop(i):
            for wk in variants:
                sc.evaluate(v, wk, split, jax.random.key(i), a.batches)

        add(f"python loop x{K}", loop)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"config": vars(a), "kernels": settings, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
