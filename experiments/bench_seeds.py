"""Time the search step of a seed sweep (nas_jax/sweep.py): K seeds in one vmapped step
vs K separate runs of the plain step, on the current backend.

Rows: 'single' is the jitted step of a single run (search.run.run_search); 'vmap K=k' is the
sweep's `jit(vmap(step))` over k stacked states. Columns: first call (trace + compile +
one step) in seconds, median ms per step after that, ms per seed-step, and the cost of
the K-seed step relative to K single steps (< 1: the sweep is cheaper than K runs).
NB201 supernet, DARTS first order, synthetic uint8 data: compute only. Each row prints when
it is done, after its place (i/N) and its whole wall time.

Measured at the defaults on a quiet 2-core CPU (XLA:CPU, jax 0.10.2), 2026-12-01, after
the CPU fast paths (experiments/results/seeds_nb201_c8_cpu_2026-12-01.json):
  mode        first s   ms/step  ms/seed-step  vs K x single
  single        11.25      27.8          27.8           1.00
  vmap K=1      13.13      28.9          28.9           1.04
  vmap K=4      14.95     127.0          31.7           1.14
(Before them, on a shared CPU: 143.7 ms single, K=4 2.01x.) On XLA:CPU a K-seed step
costs about K single steps (14% more): the two cores are already busy with one seed.
The sweep pays off where a single run leaves the accelerator idle; not yet measured on
one.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--C", type=int, default=8)
    p.add_argument("--cells", type=int, default=1, help="NB201 cells per stage")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--image", type=int, default=16)
    p.add_argument("--method", default="darts")
    p.add_argument("--ks", default="1,4", help="seed counts to time with vmap")
    p.add_argument("--steps", type=int, default=5, help="timed steps after the first call")
    p.add_argument("--json", default="")
    a = p.parse_args()

    from nas_jax import kernels

    settings = kernels.configure({})  # as the entry points do: allocator first, recorded
    import jax
    import jax.numpy as jnp
    import numpy as np

    from nas_jax import config_lib
    from nas_jax.search import run as search_run
    from nas_jax.train.loop import stack

    config = config_lib.base_config()
    config.model.update(space="nb201", C=a.C, nb201_cells=a.cells)
    config.data.update(batch_size=a.batch, pad=a.image // 8)
    config.search.update(method=a.method, steps_per_epoch=100, epochs=10)
    rng = np.random.default_rng(0)
    n = 4 * a.batch
    x = lambda: jnp.asarray(rng.integers(0, 256, (n, a.image, a.image, 3), dtype=np.uint8))
    y = lambda: jnp.asarray(rng.integers(0, 10, n).astype(np.int32))
    sd = search_run.SearchData(x(), y(), x(), y(), (0.5,) * 3, (0.25,) * 3, 10)
    setup = search_run.make_setup(config, sd)
    stage = search_run.SearchStage(config, setup, sd, [search_run.RunKeys.from_seed(0)])
    step_fn, inputs = stage.step, stage.epoch_inputs(0)

    def states_and_keys(k):
        keys = [search_run.RunKeys.from_seed(s) for s in range(k)]
        return [search_run.create_state(setup, rk, sd) for rk in keys], keys

    def time_steps(fn, state, keys):
        t0 = time.perf_counter()
        state, m = fn(state, keys, sd, inputs)
        jax.block_until_ready((state, m))
        first = time.perf_counter() - t0
        runs = []
        for _ in range(a.steps):
            t0 = time.perf_counter()
            state, m = fn(state, keys, sd, inputs)
            jax.block_until_ready((state, m))
            runs.append(time.perf_counter() - t0)
        return first, 1e3 * statistics.median(runs)

    # Each row prints when it is done (the first calls compile for seconds to minutes), after
    # its place and its whole wall time.
    print(f"backend {jax.default_backend()} ({jax.devices()[0].device_kind}); NB201 C={a.C} "
          f"cells={a.cells} batch={a.batch} image={a.image} method={a.method}")  # fmt: skip
    print(f"{'row':>5} {'wall s':>7}  {'mode':<10} {'first s':>8} {'ms/step':>9} "
          f"{'ms/seed-step':>13} {'vs K x single':>14}", flush=True)  # fmt: skip
    ks = [int(s) for s in a.ks.split(",")]
    rows = []
    for k in [0, *ks]:  # 0: the plain step of a single run
        t0 = time.perf_counter()
        if k == 0:
            (state,), (keys,) = states_and_keys(1)
            first, ms = time_steps(jax.jit(step_fn, donate_argnums=0), state, keys)
            r = {"mode": "single", "K": 1, "first_s": first, "ms_step": ms}
        else:
            states, keys = states_and_keys(k)
            fn = jax.jit(jax.vmap(step_fn, in_axes=(0, 0, None, None)), donate_argnums=0)
            first, ms = time_steps(fn, stack(states), stack(keys))
            r = {"mode": f"vmap K={k}", "K": k, "first_s": first, "ms_step": ms}
        single_ms = rows[0]["ms_step"] if rows else r["ms_step"]
        r["ms_seed_step"] = r["ms_step"] / r["K"]
        r["vs_K_single"] = r["ms_step"] / (r["K"] * single_ms)
        rows.append(r)
        place = f"{len(rows)}/{len(ks) + 1}"
        print(f"{place:>5} {time.perf_counter() - t0:>7.1f}  {r['mode']:<10} {r['first_s']:>8.2f} "
              f"{r['ms_step']:>9.1f} {r['ms_seed_step']:>13.1f} {r['vs_K_single']:>14.2f}",
              flush=True)  # fmt: skip
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"args": vars(a), "kernels": settings, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
