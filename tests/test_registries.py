"""Variation points are registries: a selector and a search method registered from this
file (no library module edited) run through the pipeline on the smoke config; unknown
names give one line listing the accepted ones."""

import json
import os

import jax
import numpy as np
import pytest
from test_main import load_config, read_jsonl

from nas_jax import arch, config_lib, data, families, pipeline, registry, spaces
from nas_jax.search import arch_grads, methods
from nas_jax.selection import selectors


def least_change_op(ctx, state, key, cell_type, edge):
    """The op whose removal changes the supernet's loss least."""
    key = jax.random.fold_in(key, 0)
    _, base_loss = ctx.evaluate(state, key)
    scores, state = ctx.score_ops(state, key, cell_type, edge)
    op = int(np.argmin(np.abs(scores.loss - base_loss)))
    return op, {"loss": scores.loss.tolist(), "base_loss": base_loss}, state


@pytest.fixture
def least_change():
    pt_mag = selectors.SELECTORS.get("pt_mag")
    entry = selectors.Selector("least_change", least_change_op, pt_mag.decide_node)
    selectors.SELECTORS.register("least_change", entry)
    yield entry
    selectors.SELECTORS.unregister("least_change")


def test_a_selector_registered_here_runs_through_the_pipeline(least_change, tmp_path):
    config = load_config("quickstart", "smoke")
    config.select.method = "least_change"
    pipeline.run(config, str(tmp_path))
    g = json.loads((tmp_path / "genotype.json").read_text())
    assert g["method"] == "least_change"
    decisions = read_jsonl(tmp_path / "decisions.jsonl")
    assert len(decisions) == 6
    for d in decisions:
        change = np.abs(np.asarray(d["loss"]) - d["base_loss"])
        assert d["choice_index"] == int(np.argmin(change))
        assert d["base_loss"] == d["valid_loss_before"]  # the same pass as the log's
    chosen = [d["candidates"][d["choice_index"]] for d in decisions]
    assert g["genotype"]["arch"].count("~") == 6 and all(op in g["text"] for op in chosen)

    # Negative control: PT (the op whose removal hurts most) decides otherwise on the same
    # run (its genotype is a golden value; genotypes match on every machine).
    with open(os.path.join(os.path.dirname(__file__), "golden", "pipeline.json")) as f:
        pt = json.load(f)["cases"]["quickstart_smoke"]["genotype.json"]
    assert pt["method"] == "pt" and pt["text"] != g["text"]


def test_a_search_method_registered_here_runs_through_the_pipeline(tmp_path):
    calls = []

    def sigmoid_mixing(a, options):  # FairDARTS-style independent sigmoids
        calls.append(1)  # counted while tracing
        w = {t: jax.nn.sigmoid(x) for t, x in a.alphas.items()}
        return {t: w[t] * a.edge_kept[t][:, None] for t in w}

    entry = methods.SearchMethod("sigmoid_darts", arch_grads.first_order, mixing=sigmoid_mixing)
    methods.register(entry)
    try:
        config = load_config("quickstart", "smoke")
        config.search.method = "sigmoid_darts"
        pipeline.run(config, str(tmp_path / "sigmoid"))
        config.search.method = "darts"  # negative control
        config.stages = ("search",)
        pipeline.run(config, str(tmp_path / "darts"))
    finally:
        methods.METHODS.unregister("sigmoid_darts")
    assert calls  # the search (and selection) used the method's mixing weights
    last = {m: read_jsonl(tmp_path / m / "metrics.jsonl")[-1] for m in ("sigmoid", "darts")}
    assert np.all(np.isfinite(last["sigmoid"]["train_loss"]))
    assert last["sigmoid"]["alphas_softmax"] != last["darts"]["alphas_softmax"]
    assert (tmp_path / "sigmoid" / "genotype.json").is_file()


def test_every_registry_lists_its_names_in_errors():
    for reg, bad in (
        (methods.METHODS, "gdas"),
        (selectors.SELECTORS, "random"),
        (families.FAMILIES, "nasbench101"),
        (spaces.SPACES, "s9"),
        (data.DATASETS, "mnist"),
    ):
        with pytest.raises(config_lib.ConfigError) as e:
            reg.get(bad)
        assert str(e.value) == f"unknown {reg.kind} {bad!r}; accepted: {', '.join(reg)}"
        assert isinstance(e.value, registry.UnknownNameError) and isinstance(e.value, KeyError)
    with pytest.raises(ValueError, match="already registered"):
        methods.register(methods.get_method("darts"))


def test_config_validation_reads_the_registries(least_change):
    config = load_config("quickstart", "smoke")
    config.select.method = "least_change"
    pipeline.validate(config)  # accepted once registered
    selectors.SELECTORS.unregister("least_change")
    with pytest.raises(config_lib.ConfigError, match="select.method='least_change' is not acc"):
        pipeline.validate(config)
    selectors.SELECTORS.register("least_change", least_change)


def test_families_dispatch_genotypes_networks_and_rules():
    darts, nb201 = families.get_family("darts"), families.get_family("nb201")
    space = spaces.get_space("s3")
    w = arch.mixing_weights(arch.init_arch_state(jax.random.key(0), space))
    g = darts.derive(space, w)
    assert families.family_of(g) is darts and darts.parse_text(g.to_text()) == g
    assert darts.prunes_nodes and not nb201.prunes_nodes
    assert spaces.get_space("nb201").prunable_nodes == ()
    assert spaces.get_space("s5").prunable_nodes == (3, 4, 5)
    cell = nb201.parse_text("|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|"
                            "none~1|nor_conv_1x1~2|")  # fmt: skip
    assert families.family_of(cell) is nb201 and nb201.benchmark_lookup
    assert [e for _, _, e in nb201.cell_edges(cell)["cell"]] == [
        "nor_conv_3x3", "skip_connect", "avg_pool_3x3", "nor_conv_1x1"
    ]  # fmt: skip
