"""Tiny stand-ins for the GPU check's dry run (no CIFAR-10 archive or NB201 table needed).

    python experiments/gpu_check_fixtures.py OUT_DIR

Writes OUT_DIR/images/{train,test}/<class>/*.png (10 classes of random 8x8 images) and
OUT_DIR/nb201_fake.csv: every NAS-Bench-201 cell with made-up accuracies (a hash of the
cell), so that the lookup finds whatever cell the smoke selection picks. Not real numbers.
"""

import hashlib
import itertools
import os
import sys

import numpy as np
from PIL import Image

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


def write_images(root: str, per_class=(("train", 4), ("test", 2)), classes=10, size=8):
    rng = np.random.default_rng(0)
    for split, n in per_class:
        for c in range(classes):
            folder = os.path.join(root, split, f"class{c}")
            os.makedirs(folder, exist_ok=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(os.path.join(folder, f"{i}.png"))


def write_fake_table(path: str) -> None:
    with open(path, "w") as f:
        f.write("arch,cifar10,cifar100,ImageNet16-120\n")
        for o in itertools.product(OPS, repeat=6):
            arch = f"|{o[0]}~0|+|{o[1]}~0|{o[2]}~1|+|{o[3]}~0|{o[4]}~1|{o[5]}~2|"
            h = int(hashlib.sha1(arch.encode()).hexdigest()[:8], 16) / 16**8
            f.write(f"{arch},{50 + 40 * h:.4f},{20 + 50 * h:.4f},{10 + 30 * h:.4f}\n")


if __name__ == "__main__":
    out = sys.argv[1]
    write_images(os.path.join(out, "images"))
    write_fake_table(os.path.join(out, "nb201_fake.csv"))
