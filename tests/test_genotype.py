"""Genotype text/JSON forms, the registry and the magnitude rule (SPEC 7.9, 10)."""

import json

import numpy as np
import pytest

from nas_jax import genotype, spaces

REGISTRY = genotype.registry()


def test_registry_has_every_spec_genotype():
    assert len(REGISTRY) == 58  # 56 from SPEC 10 + DARTS_V1 + DARTS_V2
    assert {"DARTS_V1", "DARTS_V2", "darts_pt_s5_0", "blank_pt_s4_svhn_2"} <= set(REGISTRY)
    v2 = REGISTRY["DARTS_V2"]
    assert v2.normal[:2] == (("sep_conv_3x3", 0), ("sep_conv_3x3", 1))
    assert v2.normal[7] == ("dil_conv_3x3", 2)
    assert v2.reduce[2] == ("skip_connect", 2)
    for g in REGISTRY.values():
        assert all(op not in ("none", "noise") for op, _ in g.normal + g.reduce)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_text_and_json_round_trip(name):
    g = REGISTRY[name]
    assert genotype.parse_text(g.to_text()) == g
    assert genotype.from_json_dict(json.loads(json.dumps(g.to_json_dict()))) == g


def test_round_trip_negative_control():
    g = REGISTRY["DARTS_V2"]
    mutated = g._replace(normal=(("sep_conv_5x5", 0),) + g.normal[1:])
    assert genotype.parse_text(mutated.to_text()) != g
    assert mutated.to_text() != g.to_text()


def test_parses_original_darts_text_with_range():
    text = (
        "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
        "('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), "
        "('dil_conv_3x3', 2)], normal_concat=range(2, 6), reduce=[('max_pool_3x3', 0), "
        "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
        "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=range(2, 6))"
    )
    assert genotype.parse_text(text) == REGISTRY["DARTS_V2"]


@pytest.mark.parametrize(
    "bad",
    [
        "Genotype(normal=[('sep_conv_3x3', 5)]*8, normal_concat=[2], reduce=[], reduce_concat=[])",
        "__import__('os').system('true')",
        "|skip_connect~0|+|skip_connect~1|",
        "|bogus~0|+|none~0|none~1|+|none~0|none~1|none~2|",
    ],
)
def test_bad_text_raises(bad):
    with pytest.raises(ValueError):
        genotype.parse_text(bad)


def test_nb201_string():
    arch = (
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|"
        "+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
    )
    g = genotype.parse_text(arch)
    assert g.ops == (
        "nor_conv_3x3",
        "nor_conv_3x3",
        "nor_conv_3x3",
        "skip_connect",
        "nor_conv_3x3",
        "nor_conv_1x1",
    )
    assert g.to_text() == arch
    assert genotype.from_json_dict(g.to_json_dict()) == g


def test_get_genotype_resolves_names_files_and_text(tmp_path):
    g = REGISTRY["darts_pt_s5_0"]
    path = tmp_path / "genotype.json"
    genotype.save_json(g, str(path), source="test")
    assert genotype.get_genotype(str(path)) == g
    assert genotype.get_genotype("darts_pt_s5_0") == g
    assert genotype.get_genotype(g.to_text()) == g
    with pytest.raises(
        ValueError, match=r"Registered \(\d+, in nas_jax/genotypes.json\): DARTS_V1"
    ):
        genotype.get_genotype("not_a_genotype")


def test_magnitude_rule_hand_worked():
    """A hand-worked s3 cell (ops none, skip, sep3): `none` never counts."""
    space = spaces.get_space("s3")
    w = np.full((14, 3), 0.1)
    # node 2 (edges 0,1): both kept; edge 0 has a huge `none` that must be ignored.
    w[0] = [0.9, 0.05, 0.05]  # strength 0.05, ties -> skip (earliest non-none column)
    w[1] = [0.1, 0.2, 0.7]  # sep3 from state 1
    # node 3 (edges 2,3,4): strengths 0.3, 0.6, 0.5 -> keep edge 3 then edge 4.
    w[2] = [0.0, 0.3, 0.2]
    w[3] = [0.0, 0.6, 0.4]
    w[4] = [0.0, 0.1, 0.5]
    # node 4 (edges 5..8): all tie at 0.1 -> stable order keeps inputs 0 and 1.
    # node 5 (edges 9..13): input 4 strongest, then input 2.
    w[13] = [0.0, 0.8, 0.2]
    w[11] = [0.0, 0.1, 0.6]
    g = genotype.derive_genotype(space, {"normal": w, "reduce": w})
    assert g.normal == (
        ("sep_conv_3x3", 1),
        ("skip_connect", 0),
        ("skip_connect", 1),
        ("sep_conv_3x3", 2),
        ("skip_connect", 0),
        ("skip_connect", 1),
        ("skip_connect", 4),
        ("sep_conv_3x3", 2),
    )
    assert g.normal_concat == (2, 3, 4, 5)


def test_magnitude_rule_negative_control_none_would_win():
    """With `none` counted, edge 0 would be strongest; the rule must not count it."""
    space = spaces.get_space("s3")
    w = np.full((14, 3), 0.1)
    w[0] = [0.99, 0.0, 0.01]
    w[1] = [0.0, 0.5, 0.5]
    g = genotype.derive_genotype(space, {"normal": w, "reduce": w})
    assert g.normal[0] == ("skip_connect", 1)  # strongest non-none edge first
    assert g.normal[1] == ("sep_conv_3x3", 0)


def test_nb201_magnitude_is_argmax_including_none():
    space = spaces.get_space("nb201")
    w = np.zeros((6, 5))
    w[np.arange(6), [0, 1, 2, 3, 4, 0]] = 1.0
    g = genotype.derive_genotype(space, {"cell": w})
    assert g.ops == (
        "none",
        "skip_connect",
        "nor_conv_1x1",
        "nor_conv_3x3",
        "avg_pool_3x3",
        "none",
    )
