"""Parameter counts equal the reference's exactly (SPEC 11), through the summary
command's functions and its command line."""

import json
import subprocess
import sys

import pytest

from nas_jax import summary

GOLDEN = json.load(open(__file__.replace("test_params.py", "golden/genotype_params.json")))


@pytest.mark.parametrize(
    "space,classes,expected",
    [
        ("s5", 10, 1_930_618),
        ("s5", 100, 1_953_748),
        ("s1", 10, 405_146),
        ("s2", 10, 665_466),
        ("s3", 10, 665_466),
        ("s4", 10, 624_506),
        ("s3", 100, 688_596),
        ("nb201", 10, 1_686_106),
        ("nb201", 100, 1_691_956),
        ("nb201", 120, 1_693_256),
    ],
)
def test_supernet_params(space, classes, expected):
    assert summary.summarize_supernet(space, num_classes=classes)["params"] == expected


def test_s5_supernet_batch_stats_and_alphas():
    info = summary.summarize_supernet("s5")
    assert info["batch_stats"] == 74_592  # BN running mean + var (SPEC 11)
    assert info["alphas"] == 196


@pytest.mark.parametrize(
    "name,kwargs,total,no_aux",
    [
        ("DARTS_V2", {}, 3_825_768, 3_349_342),
        ("DARTS_V2", {"num_classes": 100}, 3_946_908, 3_401_272),
        ("darts_pt_s5_0", {}, 3_327_672, 2_851_246),
        ("darts_pt_s5_3", {}, 3_804_600, 3_328_174),
        ("darts_pt_s4_1", {}, 5_178_144, 4_701_718),
        ("DARTS_V2", {"C": 16, "layers": 8}, 681_572, 246_106),
        ("DARTS_V2", {"C": 16, "layers": 8, "num_classes": 100}, 773_912, 269_236),
        ("DARTS_V2", {"imagenet": True}, 5_979_528, 4_718_752),
        ("darts_pt_s5_0", {"imagenet": True}, 5_489_352, 4_228_576),
        ("darts_pt_s5_3", {"imagenet": True}, 6_040_488, 4_779_712),
    ],
)
def test_eval_network_params(name, kwargs, total, no_aux):
    info = summary.summarize_genotype(name, **kwargs)
    assert (info["params"], info["params_without_aux"]) == (total, no_aux)


def test_aux_head_params_and_negative_control():
    with_aux = summary.summarize_genotype("DARTS_V2")
    without = summary.summarize_genotype("DARTS_V2", auxiliary=False)
    assert with_aux["params"] - without["params"] == 476_426  # SPEC 11
    assert without["params"] == without["params_without_aux"] == 3_349_342


SAMPLE = ["darts_pt_s1_1", "blank_pt_s2_2", "darts_pt_s3_c100_1", "blank_pt_s1_svhn_2"]


@pytest.mark.parametrize("name", SAMPLE)
def test_registered_genotype_params_sample(name):
    _check_registered(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(GOLDEN) - set(SAMPLE)))
def test_registered_genotype_params_all(name):
    _check_registered(name)


def _check_registered(name):
    """C36/L20 no-aux count for every genotype of SPEC 10; the eval script's C16/L8 net
    for the CIFAR-100 and SVHN ones."""
    want = GOLDEN[name]
    classes = 100 if "_c100" in name else 10
    info = summary.summarize_genotype(name, num_classes=classes)
    assert info["params_without_aux"] == want["c36_l20_noaux"]
    if want["eval_script_noaux"] is not None:
        small = summary.summarize_genotype(name, C=16, layers=8, num_classes=classes)
        assert small["params_without_aux"] == want["eval_script_noaux"]


def _run_summary(*args):
    return subprocess.run(
        [sys.executable, "-m", "nas_jax.summary", *args], capture_output=True, text=True
    )


def test_summary_cli():
    out = _run_summary("--genotype", "DARTS_V2", "--channels", "36", "--layers", "20")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["params"] == 3_825_768 and info["params_without_aux"] == 3_349_342
    out = _run_summary("--space", "nb201")
    assert json.loads(out.stdout)["params"] == 1_686_106


@pytest.mark.parametrize(
    "args,accepted",
    [
        (["--space", "s9"], "accepted: s1, s2, s3, s4, s5, darts8, nb201"),
        (["--genotype", "nope"], "Registered (58, in nas_jax/genotypes.json): DARTS_V1"),
    ],
)
def test_summary_cli_unknown_names(args, accepted):
    out = _run_summary(*args)
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and accepted in lines[0]
    assert out.stdout == ""
