r"""NAS-Bench-201 search (SPEC 4.3, 6, 15): C=16, N=5, 100 epochs, seed 0.

  python -m nas_jax.main --config configs/nb201.py:dataset=cifar10 --workdir W

Args: dataset (cifar10, cifar100, imagenet16_120, image_folder), method (darts,
darts_2nd, darts_2nd_fd, sdarts_rs, sdarts_adv, fixed_alpha), select (pt, pt_mag,
magnitude; default pt), smoke (tests). Stages default to search then select.
"""

from nas_jax import config_lib, data


def get_config(arg=None):
    a = config_lib.parse_arg(arg, dataset="cifar10", method="darts", select="pt", smoke=False)
    c = config_lib.base_config()
    c.seed = 0
    c.data.update(name=a.dataset, pad=data.DATASETS.get(a.dataset).pad)
    c.model.update(space="nb201", C=16, nb201_cells=5)
    c.search.update(method=a.method, epochs=100, checkpoint_every=20)
    c.select.method = a.select
    # The retraining protocol, used when stages include 'evaluate'.
    c.evaluate.update(config_lib.evaluate_protocol(a.dataset, a.smoke))
    if a.smoke:
        c.model.update(C=4, nb201_cells=1)
        c.data.update(batch_size=8, eval_batches=2)
        c.search.update(epochs=2, steps_per_epoch=2, checkpoint_every=1)
        c.select.update(tune_epochs=0, eval_batches=2)
    return c
