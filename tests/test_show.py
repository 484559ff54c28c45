"""`python -m nas_jax.show`: a workdir's summary in words, from its files alone (the
quickstart's real workdir is shown in test_main; here hand-written ones cover the DARTS
node decisions, old records, sweeps and bad input)."""

import json
import subprocess
import sys

import numpy as np

from nas_jax import show, spaces
from nas_jax.search import run as search_run
from nas_jax.selection.run import describe_decision


def _write(path, obj):
    path.write_text(json.dumps(obj))


def _jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def _darts_workdir(w, *, named=True):
    w.mkdir()
    space = spaces.get_space("s3")
    _write(w / "config.json", {
        "seed": 2, "num_seeds": 1, "stages": ["search", "select"], "genotype": "",
        "data": {"name": "cifar10"}, "model": {"space": "s3"},
        "search": {"method": "sdarts_rs", "epochs": 3}, "select": {"method": "pt"},
    })  # fmt: skip
    w3 = np.full((14, 3), 1 / 3)
    w3[:, 2] += 0.01  # sep_conv_3x3 leads everywhere
    alphas = search_run.named_alphas(space, {"normal": w3, "reduce": w3})
    if not named:
        alphas = {t: w3.round(5).tolist() for t in ("normal", "reduce")}
    _jsonl(w / "metrics.jsonl", [
        {"epoch": e, "seconds": 1.5, "train_loss": 2.0 - e, "valid_eval_acc": 30.0 + e,
         "epsilon": 0.1, "alphas_softmax": alphas, "genotype": "G"} for e in range(2)
    ])  # fmt: skip
    node = {"event": 3, "epoch": 0, "cell_type": "reduce", "kind": "node", "node": 4,
            "candidates": [5, 6, 7, 8], "choice": [6, 8]}  # fmt: skip
    if named:
        node.update(node_name="node 2", choice_names=[space.edge_name(6), space.edge_name(8)])
    op = {"event": 0, "epoch": 0, "cell_type": "normal", "kind": "op", "edge": 9,
          "candidates": list(space.edge_ops("normal", 9)), "choice": "sep_conv_3x3",
          "valid_acc_before": 50.0, "valid_acc_after": 45.5}  # fmt: skip
    if named:
        op["edge_name"] = space.edge_name(9)
    _jsonl(w / "decisions.jsonl", [op, node])
    return space


def test_darts_run_in_words(tmp_path):
    _darts_workdir(tmp_path / "run")
    s = show.summarize(str(tmp_path / "run"))
    assert s["search"]["epochs_done"] == 2 and s["search"]["epochs"] == 3
    assert s["search"]["last"] == {"train_loss": 1.0, "valid_eval_acc": 31.0, "epsilon": 0.1}
    text = show.format_summary(s)
    assert "Search: 2/3 epochs in 3.0 s" in text
    assert "search sdarts_rs, selection pt" in text
    assert "softmax(alpha), normal:" in text and "softmax(alpha), reduce:" in text
    row = next(line for line in text.splitlines() if "node 3 <- c_{k-1}" in line)
    assert row.split()[-1] == "0.3433*"  # sep_conv_3x3, the largest, marked
    assert "event 0: normal edge 9 (node 3 <- c_{k-2}): op sep_conv_3x3; " in text
    assert "valid acc 50.00 -> 45.50" in text
    assert "event 3: reduce node 2: keeps edges 6 (node 2 <- c_{k-1}), 8 (node 2 <- node 1)" in text


def test_records_of_earlier_versions_are_shown_with_indices(tmp_path):
    _darts_workdir(tmp_path / "run", named=False)
    text = show.format_summary(show.summarize(str(tmp_path / "run")))
    assert "event 0: normal edge 9: op sep_conv_3x3" in text
    assert "event 3: reduce state 4: keeps edges 6, 8" in text
    assert "edge 13" in text  # list-form alphas: edges by index


def test_describe_decision_nb201():
    r = {"cell_type": "cell", "kind": "op", "edge": 3, "edge_name": "node 3 <- node 0",
         "choice": "nor_conv_3x3"}  # fmt: skip
    assert describe_decision(r) == "cell edge 3 (node 3 <- node 0): op nor_conv_3x3"


def test_sweep_shows_every_member(tmp_path):
    w = tmp_path / "sweep"
    w.mkdir()
    _write(w / "config.json", {
        "seed": 0, "num_seeds": 2, "stages": ["search", "select"], "data": {"name": "digits"},
        "model": {"space": "s3"}, "search": {"method": "darts"}, "select": {"method": "pt"},
    })  # fmt: skip
    for k in range(2):
        _darts_workdir(w / f"seed_{k}")
    s = show.summarize(str(w))
    assert list(s["members"]) == ["seed_0", "seed_1"] and s["sweep"] is None
    text = show.format_summary(s)
    assert "Sweep of 2 seeds" in text and text.count("Search: 2/3 epochs") == 2


def test_not_a_workdir_is_one_line_exit_2(tmp_path):
    out = subprocess.run([sys.executable, "-m", "nas_jax.show", str(tmp_path)],
                         capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 2
    want = f"error: {tmp_path} is not a nas_jax workdir: it has no config.json"
    assert out.stderr.strip() == want
    assert out.stdout == ""


def test_json_output(tmp_path):
    _darts_workdir(tmp_path / "run")
    out = subprocess.run([sys.executable, "-m", "nas_jax.show", str(tmp_path / "run"), "--json"],
                         capture_output=True, text=True, check=True)  # fmt: skip
    s = json.loads(out.stdout)
    assert s["select"]["decisions"][1]["choice_names"] == ["node 2 <- c_{k-1}", "node 2 <- node 1"]
    assert s["files"] == ["config.json", "decisions.jsonl", "metrics.jsonl"]
