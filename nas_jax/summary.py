r"""Prints one JSON object describing a network (parameter counts, shapes).

  python -m nas_jax.summary --space s5
  python -m nas_jax.summary --genotype DARTS_V2 --channels 36 --layers 20 --auxiliary
  python -m nas_jax.summary --genotype DARTS_V2 --imagenet --channels 48 --layers 14 \
      --num_classes 1000

Counts are taken from abstract shapes (`jax.eval_shape`): nothing is computed.
"""

from __future__ import annotations

import json
import sys

import jax
import jax.numpy as jnp
from absl import app, flags, logging

from nas_jax import arch, families, genotype, networks, spaces, supernet

_SPACE = flags.DEFINE_string("space", None, f"Search supernet: one of {sorted(spaces.SPACES)}.")
_GENOTYPE = flags.DEFINE_string(
    "genotype",
    None,
    "Evaluation network: a registered name, a genotype JSON path or text.",
)
_CHANNELS = flags.DEFINE_integer("channels", None, "Initial channels C (default per network).")
_LAYERS = flags.DEFINE_integer("layers", None, "Cells L (DARTS family; default per network).")
_CLASSES = flags.DEFINE_integer("num_classes", None, "Classes (default 10; 1000 for ImageNet).")
_AUX = flags.DEFINE_boolean("auxiliary", True, "Evaluation network with auxiliary head.")
_IMAGENET = flags.DEFINE_boolean("imagenet", False, "The ImageNet evaluation network.")
_RESOLUTION = flags.DEFINE_integer("resolution", None, "Input size (32; 224 for ImageNet).")


def _variables(model, x, *args, **kwargs):
    rngs = {
        "params": jax.random.key(0),
        "noise": jax.random.key(1),
        "dropout": jax.random.key(2),
    }
    return jax.eval_shape(lambda: model.init(rngs, x, *args, **kwargs))


def summarize_supernet(space_name: str, *, C=16, layers=8, num_classes=10, resolution=32) -> dict:
    space = spaces.get_space(space_name)
    model = supernet.build_supernet(space, C=C, layers=layers, num_classes=num_classes)
    weights = arch.mixing_weights(arch.init_arch_state(jax.random.key(0), space))
    x = jnp.zeros((1, resolution, resolution, 3))
    v = _variables(model, x, weights, train=True)
    return {
        "network": "supernet",
        "space": space.name,
        "channels": C,
        "layers": layers if families.get_family(space.family).prunes_nodes else None,
        "num_classes": num_classes,
        "params": networks.count_params(v["params"]),
        "batch_stats": networks.count_params(v.get("batch_stats", {})),
        "alphas": space.num_edges * space.num_ops * len(space.cell_types),
        "alpha_shape": {t: [space.num_edges, space.num_ops] for t in space.cell_types},
        "ops": {t: list(space.ops[t][0]) for t in space.cell_types},
    }


def summarize_genotype(
    spec: str,
    *,
    C=None,
    layers=None,
    num_classes=None,
    auxiliary=True,
    imagenet=False,
    resolution=None,
) -> dict:
    g = genotype.get_genotype(spec)
    fam = families.family_of(g)
    imagenet = imagenet and fam.auxiliary_head  # the ImageNet network is a DARTS network
    C0, layers0 = (48, 14) if imagenet else fam.network_defaults
    C, layers = C or C0, layers or layers0
    num_classes = num_classes or (1000 if imagenet else 10)
    resolution = resolution or (224 if imagenet else 32)
    auxiliary = bool(auxiliary and fam.auxiliary_head)
    model = fam.build_network(
        g, C=C, layers=layers, num_classes=num_classes, auxiliary=auxiliary, imagenet=imagenet
    )
    v = _variables(model, jnp.zeros((1, resolution, resolution, 3)), train=True)
    params = v["params"]
    main_params = {k: p for k, p in params.items() if "auxiliary" not in k}
    out = {
        "network": "imagenet" if imagenet else fam.name,
        "genotype": g.to_text(),
        "channels": C,
        "layers": layers,
        "num_classes": num_classes,
        "auxiliary": auxiliary,
        "params": networks.count_params(params),
        "params_without_aux": networks.count_params(main_params),
    }
    out["params_M"] = round(out["params_without_aux"] / 1e6, 6)
    return out


def main(argv) -> None:
    logging.set_verbosity(logging.WARNING)
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if (_SPACE.value is None) == (_GENOTYPE.value is None):
        print(
            "error: give exactly one of --space NAME or --genotype NAME_OR_JSON",
            file=sys.stderr,
        )
        sys.exit(2)
    try:
        if _SPACE.value is not None:
            info = summarize_supernet(
                _SPACE.value,
                C=_CHANNELS.value or 16,
                layers=_LAYERS.value or 8,
                num_classes=_CLASSES.value or 10,
                resolution=_RESOLUTION.value or 32,
            )
        else:
            info = summarize_genotype(
                _GENOTYPE.value,
                C=_CHANNELS.value,
                layers=_LAYERS.value,
                num_classes=_CLASSES.value,
                auxiliary=_AUX.value,
                imagenet=_IMAGENET.value,
                resolution=_RESOLUTION.value,
            )
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(info))


if __name__ == "__main__":
    app.run(main)
