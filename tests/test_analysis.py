"""`python -m nas_jax.analysis`: alpha_gap, selection_curve and report on hand-written
workdirs whose numbers can be worked out by hand, the one-line errors of the command, and
the files written."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from nas_jax import analysis, spaces
from nas_jax.analysis import alpha_gap, base, report, stats
from nas_jax.search import run as search_run
from nas_jax.selection.draw import have_matplotlib
from nas_jax.selection.run import describe_decision

S2 = spaces.get_space("s2")  # ops per edge: skip_connect, sep_conv_3x3
ACCS = (10.0, 20.0, 40.0)


def _write(path, obj):
    path.write_text(json.dumps(obj))


def _jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def _s2_weights(epoch: int, swap: bool = False) -> dict:
    """normal: every edge skip 0.6 + 0.1 epoch (gap 0.2 + 0.2 epoch); reduce: edges 0-6
    skip 0.3 (gap -0.4), edges 7-13 skip 0.5 (gap 0). `swap` exchanges the two ops."""
    normal = np.tile([0.6 + 0.1 * epoch, 0.4 - 0.1 * epoch], (14, 1))
    reduce = np.array([[0.3, 0.7]] * 7 + [[0.5, 0.5]] * 7)
    w = {"normal": normal, "reduce": reduce}
    return {t: v[:, ::-1] if swap else v for t, v in w.items()}


def _s2_workdir(w, *, swap=False, named=True, select_method="pt"):
    w.mkdir(parents=True)
    _write(w / "config.json", {
        "seed": 0, "num_seeds": 1, "stages": ["search", "select"], "genotype": "",
        "data": {"name": "cifar10"}, "model": {"space": "s2"},
        "search": {"method": "darts", "epochs": 3}, "select": {"method": select_method},
    })  # fmt: skip
    records = []
    for e, acc in enumerate(ACCS):
        weights = _s2_weights(e, swap)
        alphas = search_run.named_alphas(S2, weights) if named else {
            t: v.round(5).tolist() for t, v in weights.items()}  # fmt: skip
        records.append({"epoch": e, "seconds": 1.0, "train_loss": 2.0 - 0.5 * e,
                        "valid_eval_acc": acc, "alphas_softmax": alphas})  # fmt: skip
    _jsonl(w / "metrics.jsonl", records)
    return w


# Hand-computed: normal 0.2 + 0.2 e; reduce (7 * -0.4 + 7 * 0) / 14 = -0.2; all: the mean of
# the 28 edges = (normal + reduce) / 2.
NORMAL = [0.2, 0.4, 0.6]
REDUCE = [-0.2, -0.2, -0.2]
ALL = [0.0, 0.1, 0.2]


@pytest.mark.parametrize("named", [True, False])
def test_alpha_gap_equals_hand_computed_values(tmp_path, named):
    w = _s2_workdir(tmp_path / "run", named=named)
    out, paths = analysis.run("alpha_gap", str(w))
    r = out.result
    assert r["conv"] == ["sep_conv_3x3"] and r["cells"] == ["normal", "reduce", "all"]
    got = {k: [e["gap"][k] for e in r["epochs"]] for k in r["cells"]}
    np.testing.assert_allclose(got["normal"], NORMAL, atol=1e-9)
    np.testing.assert_allclose(got["reduce"], REDUCE, atol=1e-9)
    np.testing.assert_allclose(got["all"], ALL, atol=1e-9)
    assert [e["valid_eval_acc"] for e in r["epochs"]] == list(ACCS)
    corr = r["correlation"]
    assert corr["normal"]["pearson"] == pytest.approx(np.corrcoef(NORMAL, ACCS)[0, 1])
    assert corr["normal"]["spearman"] == pytest.approx(1.0)
    assert corr["normal"]["kendall"] == pytest.approx(1.0)
    assert corr["reduce"]["pearson"] is None  # a constant gap has no correlation
    with open(paths[-1]) as f:
        assert json.load(f)["epochs"][2]["gap"]["normal"] == pytest.approx(0.6)


def test_alpha_gap_swapped_ops_flip_the_sign(tmp_path):
    """Negative control: skip and conv exchanged on every edge give the opposite gaps."""
    a = analysis.run("alpha_gap", str(_s2_workdir(tmp_path / "a")))[0].result
    b = analysis.run("alpha_gap", str(_s2_workdir(tmp_path / "b", swap=True)))[0].result
    for ea, eb in zip(a["epochs"], b["epochs"], strict=True):
        for k in ("normal", "reduce", "all"):
            assert eb["gap"][k] == pytest.approx(-ea["gap"][k], abs=1e-9)
    assert b["epochs"][2]["gap"]["normal"] == pytest.approx(-0.6)
    assert b["correlation"]["normal"]["kendall"] == pytest.approx(-1.0)


def test_alpha_gap_options_and_bad_values(tmp_path):
    w = str(_s2_workdir(tmp_path / "run"))
    with pytest.raises(analysis.AnalysisError, match="nor_conv_3x3.*accepted: sep_conv_3x3"):
        analysis.run("alpha_gap", w, conv="nor_conv_3x3")
    with pytest.raises(analysis.AnalysisError, match="accepted: drop, zero"):
        analysis.run("alpha_gap", w, missing="maybe")
    with pytest.raises(analysis.AnalysisError, match="no option 'cnov'"):
        analysis.run("alpha_gap", w, cnov="x")
    assert not os.path.exists(os.path.join(w, "analysis"))  # refused before writing
    assert alpha_gap.resolve_convs(spaces.get_space("nb201"), "auto") == ("nor_conv_3x3",)
    zero = analysis.run("alpha_gap", w, conv="sep_conv_3x3", missing="zero")[0].result
    assert zero["epochs"][0]["gap"]["normal"] == pytest.approx(0.2)  # S2: every edge has both


def test_alpha_gap_of_a_sweep_per_member_and_mean(tmp_path):
    sweep = tmp_path / "sweep"
    _s2_workdir(sweep / "seed_0")
    _s2_workdir(sweep / "seed_1", swap=True)
    _write(sweep / "config.json", json.loads((sweep / "seed_0" / "config.json").read_text()))
    r = analysis.run("alpha_gap", str(sweep))[0].result
    assert list(r["members"]) == ["seed_0", "seed_1"]
    last = r["mean_std"]["epochs"][2]["gap"]["normal"]
    assert last["mean"] == pytest.approx(0.0) and last["std"] == pytest.approx(0.6 * 2**0.5)
    assert r["mean_std"]["correlation"]["normal"]["kendall"]["mean"] == pytest.approx(0.0)


def test_correlations_match_scipy_with_ties():
    scipy_stats = pytest.importorskip("scipy.stats")
    x, y = [1, 2, 2, 3, 5, 5, 4], [2, 1, 4, 4, 6, 5, 5]
    assert stats.spearman(x, y) == pytest.approx(scipy_stats.spearmanr(x, y)[0])
    assert stats.kendall(x, y) == pytest.approx(scipy_stats.kendalltau(x, y)[0])
    assert stats.pearson(x, y) == pytest.approx(scipy_stats.pearsonr(x, y)[0])


def _decision(event, edge, choice, before, after):
    return {"event": event, "epoch": 5 * event, "cell_type": "normal", "kind": "op",
            "edge": edge, "edge_name": S2.edge_name(edge),
            "candidates": ["skip_connect", "sep_conv_3x3"], "choice": choice,
            "valid_acc_before": before, "valid_acc_after": after}  # fmt: skip


def _with_selection(w, accs):
    """Decision k keeps sep_conv_3x3 on edge k; accs: the accuracies before and after."""
    records = [_decision(k, k, "sep_conv_3x3", b, a) for k, (b, a) in enumerate(accs)]
    _jsonl(w / "decisions.jsonl", records)
    _jsonl(w / "select_metrics.jsonl", [
        {"event": k // 5, "epoch": k, "train_loss": 1.0, "valid_acc": 50.0 + k} for k in range(10)
    ])  # fmt: skip
    return records


def test_selection_curve_points_and_comparison(tmp_path):
    pt = _s2_workdir(tmp_path / "pt")
    mag = _s2_workdir(tmp_path / "mag", select_method="pt_mag")
    _with_selection(pt, [(60.0, 58.0), (61.0, 62.5)])
    _with_selection(mag, [(60.0, 55.0), (57.0, 50.0)])
    out, paths = analysis.run("selection_curve", str(pt), compare=[str(mag)])
    a, b = out.result["curves"]
    assert [(p["decision"], p["valid_acc"]) for p in a["points"]] == [(0, 60.0), (1, 58.0),
                                                                       (2, 62.5)]  # fmt: skip
    assert [p["valid_acc"] for p in b["points"]] == [60.0, 55.0, 50.0]
    assert a["label"] == "pt (pt)" and b["label"] == "mag (pt_mag)"
    assert a["points"][2]["what"] == "normal edge 1 (node 0 <- c_{k-1}): op sep_conv_3x3"
    assert [t["valid_acc"] for t in a["tuning"]] == [50.0 + k for k in range(10)]
    assert all(p.startswith(str(pt / "analysis" / "selection_curve")) for p in paths)
    assert not (mag / "analysis").exists()  # written into the first workdir only


def test_selection_curve_needs_the_logged_accuracy(tmp_path):
    w = _s2_workdir(tmp_path / "run")
    with pytest.raises(analysis.AnalysisError, match="has no decisions.jsonl"):
        analysis.run("selection_curve", str(w))
    records = _with_selection(w, [(60.0, 58.0)])
    del records[0]["valid_acc_after"]
    _jsonl(w / "decisions.jsonl", records)
    with pytest.raises(analysis.AnalysisError, match="log_accuracy=True"):
        analysis.run("selection_curve", str(w))
    assert not (w / "analysis").exists()


def test_report_holds_the_decisions_and_links_that_exist(tmp_path):
    w = _s2_workdir(tmp_path / "run")
    records = _with_selection(w, [(60.0, 58.0), (61.0, 62.5)])
    (w / "alphas.png").write_bytes(b"not really a png")
    _write(w / "genotype.json", {"method": "pt", "text": "GENOTYPE-PT"})
    analysis.run("alpha_gap", str(w))
    out, paths = analysis.run("report", str(w))
    folder = w / "analysis" / "report"
    md = (folder / "report.md").read_text()
    for r in records:
        assert describe_decision(r) in md
    assert "valid acc 61.00 -> 62.50" in md and "`GENOTYPE-PT`" in md
    assert "](../../alphas.png)" in md and "cells.png" not in md  # only pictures present
    assert "### alpha_gap" in md and "Kendall +1.000" in md
    links = out.result["links"]
    assert "../../analysis/alpha_gap/alpha_gap.json" in links
    for link in links:
        assert (folder / link).exists(), link
    html_text = (folder / "report.html").read_text()
    assert "<li>event 1: normal edge 1" in html_text
    assert ("search_curves.png" in links) == have_matplotlib()
    assert str(folder / "report.json") == paths[-1]


def test_json_and_figure_written(tmp_path, monkeypatch):
    w = _s2_workdir(tmp_path / "run")
    folder = w / "analysis" / "alpha_gap"
    analysis.run("alpha_gap", str(w))
    assert (folder / "alpha_gap.json").exists()
    assert (folder / "alpha_gap.png").exists() == have_matplotlib()
    if have_matplotlib():
        assert (folder / "alpha_gap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [n for n in os.listdir(folder) if n.endswith(".tmp")]
    (folder / "alpha_gap.png").unlink(missing_ok=True)
    monkeypatch.setattr(base, "have_matplotlib", lambda: False)
    analysis.run("alpha_gap", str(w))
    assert sorted(os.listdir(folder)) == ["alpha_gap.json"]
    monkeypatch.setattr(report, "have_matplotlib", lambda: False)
    out, _ = analysis.run("report", str(w))
    assert not any("search_curves" in link for link in out.result["links"])


def _command(*args):
    return subprocess.run([sys.executable, "-m", "nas_jax.analysis", *args],
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def test_command_errors_are_one_line_and_write_nothing(tmp_path):
    w = _s2_workdir(tmp_path / "run")
    p = _command("oracle_typo", "--workdir", str(w))
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.strip().splitlines() == [
        "error: unknown analysis 'oracle_typo'; accepted: alpha_gap, report, selection_curve"
    ]
    empty = tmp_path / "empty"
    empty.mkdir()
    p = _command("alpha_gap", "--workdir", str(empty))
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "config.json" in lines[0]
    assert str(empty) in lines[0]
    assert os.listdir(empty) == [] and not (w / "analysis").exists()


def test_command_writes_and_prints(tmp_path):
    w = _s2_workdir(tmp_path / "run")
    p = _command("alpha_gap", "--workdir", str(w), "--missing", "zero")
    assert p.returncode == 0, p.stderr
    assert "normal: last gap +0.6" in p.stdout
    assert f"wrote {w / 'analysis' / 'alpha_gap' / 'alpha_gap.json'}" in p.stdout


def test_alpha_gap_on_s1_drops_or_zeroes_edges_without_both_ops(tmp_path):
    """S1: only normal edges 3, 6, 7, 9 have skip_connect and sep_conv_3x3; weights 0.7 on
    each edge's first op, 0.3 on its second."""
    w = _s2_workdir(tmp_path / "run")
    config = json.loads((w / "config.json").read_text())
    config["model"]["space"] = "s1"
    _write(w / "config.json", config)
    s1 = spaces.get_space("s1")
    weights = {t: np.tile([0.7, 0.3], (14, 1)) for t in s1.cell_types}
    alphas = search_run.named_alphas(s1, weights)
    _jsonl(w / "metrics.jsonl", [{"epoch": 0, "valid_eval_acc": 50.0, "alphas_softmax": alphas}])
    drop = analysis.run("alpha_gap", str(w))[0].result
    assert drop["cells"] == ["normal"]  # no reduce edge has both
    assert drop["epochs"][0]["gap"]["normal"] == pytest.approx(0.4)
    zero = analysis.run("alpha_gap", str(w), missing="zero")[0].result
    # normal: skip first on 10 edges (0.7), second on edges 5, 10 (0.3); sep3 second on 3, 6, 7, 9
    assert zero["epochs"][0]["gap"]["normal"] == pytest.approx((7.0 + 0.6 - 1.2) / 14)


def test_report_of_a_sweep_has_its_analyses_and_every_member(tmp_path):
    sweep = tmp_path / "sweep"
    for k in range(2):
        _with_selection(_s2_workdir(sweep / f"seed_{k}"), [(60.0, 58.0 + k)])
    _write(sweep / "config.json", json.loads((sweep / "seed_0" / "config.json").read_text()))
    curve = analysis.run("selection_curve", str(sweep))[0].result
    assert [p["mean"] for p in curve["sweep_means"][0]["points"]] == [60.0, 58.5]
    out, _ = analysis.run("report", str(sweep))
    md = (sweep / "analysis" / "report" / "report.md").read_text()
    assert md.index("### selection_curve") < md.index("## seed_0") < md.index("## seed_1")
    assert "valid acc 60.00 -> 59.00" in md
    for link in out.result["links"]:
        assert (sweep / "analysis" / "report" / link).exists(), link
