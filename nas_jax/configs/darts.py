r"""DARTS-family search (SPEC 6, 15): spaces s1-s5 and darts8 on CIFAR-10/100, SVHN or
an image folder, with the reference's hyper-parameters.

  python -m nas_jax.main --config configs/darts.py:space=s5,dataset=cifar10 --workdir W
  python -m nas_jax.main --config configs/darts.py:space=s2,dataset=image_folder \
      --config.data.folder=/data/my_images --workdir W

Args: space (s1-s5, darts8; default s5), dataset (cifar10, cifar100, svhn_cropped,
image_folder), method (darts, darts_2nd, darts_2nd_fd, sdarts_rs, sdarts_adv,
fixed_alpha), select (pt, pt_mag, magnitude; default pt), smoke (tiny network, a
few steps: for tests). Stages default to search then select.
TFDS datasets must be prepared in --config.data.data_dir (array_record format).
"""

from nas_jax import config_lib, data


def get_config(arg=None):
    a = config_lib.parse_arg(
        arg, space="s5", dataset="cifar10", method="darts", select="pt", smoke=False
    )
    c = config_lib.base_config()
    c.seed = 2
    c.data.update(name=a.dataset, pad=data.DATASETS.get(a.dataset).pad)
    c.model.space = a.space
    c.search.update(method=a.method, epochs=50, checkpoint_every=10)
    c.select.method = a.select
    # The retraining protocol, used when stages include 'evaluate'.
    c.evaluate.update(config_lib.evaluate_protocol(a.dataset, a.smoke))
    if a.smoke:
        c.model.update(C=4, layers=3)
        c.data.update(batch_size=8, eval_batches=2)
        c.search.update(epochs=2, steps_per_epoch=2, checkpoint_every=1)
        c.select.update(tune_epochs=0, eval_batches=2)
    return c
