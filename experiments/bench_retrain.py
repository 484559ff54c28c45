"""Time one retraining step (SPEC 8.1 protocol) on the current backend and extrapolate.

The real training step of `nas_jax.evaluation.retrain` (batch drawn on device, crop,
flip, cutout, forward with drop-path and the auxiliary head, backward, PyTorch-order
SGD) on synthetic uint8 CIFAR-sized data. Prints the first call (trace + compile +
one step) separately, the median of `--steps` timed steps, and the extrapolated
seconds per epoch (ceil(50,000 / batch) = 521 steps at batch 96) and per run.

    PYTHONPATH=. /work/venv/bin/python experiments/bench_retrain.py               # full size
    PYTHONPATH=. /work/venv/bin/python experiments/bench_retrain.py --C 8 --layers 5 \
        --batch 16 --steps 3                                                     # a quick look

Measured (2 shared CPU cores, XLA:CPU): C=16 L=8 batch 32, compile 40 s, 1.07 s/step;
C=8 L=5 batch 16, compile 27 s, 0.17 s/step. The full size was not run on CPU.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--genotype", default="DARTS_V2")
    p.add_argument("--C", type=int, default=36)
    p.add_argument("--layers", type=int, default=20)
    p.add_argument("--batch", type=int, default=96)
    p.add_argument("--image", type=int, default=32)
    p.add_argument("--steps", type=int, default=5, help="timed steps after the first")
    p.add_argument("--train_examples", type=int, default=50_000)
    p.add_argument("--epochs", type=int, default=600)
    p.add_argument("--no_aux", action="store_true")
    p.add_argument("--drop_path_prob", type=float, default=0.2)
    p.add_argument("--json", default="", help="also write the numbers to this file")
    a = p.parse_args()

    from nas_jax import kernels

    settings = kernels.configure({})  # as the entry points do: allocator first, recorded
    import jax
    import jax.numpy as jnp
    import numpy as np

    from nas_jax import config_lib, genotype
    from nas_jax.evaluation import retrain
    from nas_jax.search import optim

    config = config_lib.base_config()
    ev = config.evaluate
    ev.update(C=a.C, layers=a.layers, batch_size=a.batch, auxiliary=not a.no_aux,
              drop_path_prob=a.drop_path_prob, epochs=a.epochs)  # fmt: skip
    g = genotype.get_genotype(a.genotype)
    model = retrain.build_network(g, ev, 10)
    spe = math.ceil(a.train_examples / a.batch)
    tx = optim.weight_optimizer(optim.cosine_epoch_schedule(ev.lr, ev.lr_min, a.epochs, spe))
    keys = retrain.RetrainKeys.from_seed(0)
    shape = (a.image, a.image, 3)
    state = retrain.create_state(model, keys.init, jnp.zeros((2, *shape)), tx)
    n = max(4 * a.batch, 512)  # the step gathers from the data in device memory
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.integers(0, 256, (n, *shape), dtype=np.uint8))
    y = jnp.asarray(rng.integers(0, 10, n).astype(np.int32))
    mean, std = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
    step = jax.jit(retrain.make_train_step(model, tx, ev, config.data, mean, std, n),
                   donate_argnums=0)  # fmt: skip
    drop = jnp.float32(a.drop_path_prob / 2) if a.drop_path_prob else None

    t0 = time.perf_counter()
    inputs = {"drop_path_prob": drop}
    state, m = step(state, keys, (x, y), inputs)
    jax.block_until_ready(m)
    first = time.perf_counter() - t0
    times = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        state, m = step(state, keys, (x, y), inputs)
        jax.block_until_ready(m)
        times.append(time.perf_counter() - t0)
    per_step = statistics.median(times)
    out = {
        "backend": jax.default_backend(),
        "device": str(jax.devices()[0]),
        "genotype": a.genotype, "C": a.C, "layers": a.layers, "batch": a.batch,
        "auxiliary": not a.no_aux, "drop_path_prob": a.drop_path_prob,
        "params_no_aux": retrain.count_params(state.params)[0],
        "first_call_seconds": first,
        "step_seconds_median": per_step,
        "step_seconds": times,
        "steps_per_epoch": spe,
        "epoch_seconds": per_step * spe,
        "run_hours": per_step * spe * a.epochs / 3600,
        "epochs": a.epochs,
        "kernels": settings,
    }  # fmt: skip
    print(json.dumps(out, indent=2))
    print(
        f"{a.genotype} C={a.C} L={a.layers} batch {a.batch} on {out['backend']}: compile "
        f"{first:.1f} s, {per_step:.3f} s/step -> {out['epoch_seconds']:.0f} s/epoch "
        f"({spe} steps), {out['run_hours']:.1f} h for {a.epochs} epochs"
    )
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
