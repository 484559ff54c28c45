r"""Evaluate one genotype: NAS-Bench-201 lookup or retraining from scratch (SPEC 8).

  python -m nas_jax.main --config configs/evaluate.py:dataset=cifar10 --workdir W \
      --config.genotype=DARTS_V2
  python -m nas_jax.main --config configs/evaluate.py --workdir W \
      --config.genotype=SEARCH_WORKDIR/genotype.json \
      --config.evaluate.nb201_table=nb201_test_accuracy.csv

The NAS-Bench-201 table (a CSV file) and how to make it: docs/reference.md, section 8.4.

--config.genotype takes a registered name, a genotype.json path or a DARTS/NB201 text
form ('|skip_connect~0|+|...'); empty = W/genotype.json. Args: dataset (cifar10: C=36
L=20, 600 epochs, SPEC 8.1; cifar100, svhn_cropped: C=16 L=8, 8.2; image_folder: as
cifar10, with --config.data.folder; imagenet16_120; digits: a small network, minutes on
a CPU; imagenet: the 8.3 settings, builds but its input pipeline is not implemented),
method (auto: lookup for NB201 cells when evaluate.nb201_table is set, else retrain;
lookup; retrain), smoke (tiny network, 2 epochs of 2 steps: for tests).
Expected: DARTS_V2 on CIFAR-10 ends near 97% test accuracy after 600 epochs (about 1.5
GPU-days in the reference); dataset=digits (C=8, L=5, 10 epochs) about 45 s on two CPU
cores, about 87% test accuracy; a lookup takes a second. Writes W/result.json.
"""

from nas_jax import config_lib, data


def get_config(arg=None):
    a = config_lib.parse_arg(arg, dataset="cifar10", method="auto", smoke=False)
    c = config_lib.base_config()
    c.seed = 2  # the reference's eval scripts
    c.stages = ("evaluate",)
    c.data.name = "imagenet2012" if a.dataset == "imagenet" else a.dataset
    if c.data.name in data.DATASETS:
        c.data.pad = data.DATASETS.get(c.data.name).pad
    c.evaluate.method = a.method
    c.evaluate.update(config_lib.evaluate_protocol(a.dataset, a.smoke))
    return c
