r"""Quickstart: the paper's method on scikit-learn's 8x8 digits (no download): search a
small NB201 supernet, then select its cell by perturbation (PT) with progressive tuning.

  python -m nas_jax.main --config configs/quickstart.py --workdir /tmp/nas_jax_quickstart

Args (comma separated after ':'): `smoke` (a few steps, for tests), `space=NAME`
(default nb201; s1-s5, darts8), `select=NAME` (pt, pt_mag, magnitude). Expected on a
2-core CPU: a few minutes including compilation; writes config.json, metrics.jsonl,
checkpoints/, decisions.jsonl, genotype.json, genotype_magnitude.json and cells.png.
"""

from nas_jax import config_lib, data


def get_config(arg=None):
    a = config_lib.parse_arg(arg, smoke=False, space="nb201", select="pt")
    c = config_lib.base_config()
    c.seed = 0
    c.data.update(name="digits", pad=data.DATASETS.get("digits").pad, batch_size=64)
    c.model.update(space=a.space, C=8, layers=5, nb201_cells=1)
    c.search.update(epochs=10, checkpoint_every=5)
    c.select.method = a.select
    # The retraining protocol, used when stages include 'evaluate'.
    c.evaluate.update(config_lib.evaluate_protocol("digits", a.smoke))
    if a.smoke:
        c.model.update(C=4, layers=3)
        c.data.update(batch_size=16, eval_batches=2)
        c.search.update(epochs=2, steps_per_epoch=3, checkpoint_every=1)
        c.select.update(tune_epochs=0, eval_batches=2)
    return c
