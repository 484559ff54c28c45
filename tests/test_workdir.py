"""The workdir contract (issue 15): a rerun with another config is refused before it writes
anything, one writer at a time, validated numbers and genotype texts, one error path."""

import errno
import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
from test_main import ROOT, load_config, read_jsonl

from nas_jax import config_lib, pipeline, reporting, workdir
from nas_jax import main as main_lib
from nas_jax.train import loop as loop_lib


def snapshot(path) -> dict:
    """Every file under `path` with its size and content hash (what a refusal must keep)."""
    import hashlib

    out = {}
    for root, _, files in os.walk(path):
        for name in files:
            p = os.path.join(root, name)
            with open(p, "rb") as f:
                out[os.path.relpath(p, path)] = hashlib.sha256(f.read()).hexdigest()
    return out


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished quickstart smoke run (search + PT selection) and its files."""
    w = str(tmp_path_factory.mktemp("finished"))
    pipeline.run(load_config("quickstart", "smoke"), w)
    return w


def changed(**overrides):
    config = load_config("quickstart", "smoke")
    for key, value in overrides.items():
        section, _, name = key.rpartition("__")
        (config[section] if section else config)[name] = value
    return config


# --------------------------------------------------------------------------------------
# A different config on an existing workdir (observed: exit 0 with mislabelled results)
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, names",
    [
        ({"select__method": "pt_mag"}, "select.method: 'pt' -> 'pt_mag'"),
        ({"seed": 1}, "seed: 0 -> 1"),
        ({"search__epochs": 3}, "search.epochs: 2 -> 3"),
        ({"model__C": 16}, "model.C: 4 -> 16"),
        ({"model__space": "s5", "model__layers": 3}, "model.space: 'nb201' -> 's5'"),
        ({"search__lr": 0.05, "data__pad": 2}, "data.pad: 1 -> 2; search.lr: 0.025 -> 0.05"),
    ],
)
def test_another_config_is_refused_before_anything_is_written(finished, overrides, names):
    before = snapshot(finished)
    with pytest.raises(workdir.WorkdirError) as e:
        pipeline.run(changed(**overrides), finished)
    message = str(e.value)
    assert "\n" not in message and names in message
    assert "another --workdir" in message and "--overwrite" in message
    assert ("--extend" in message) == (overrides == {"search__epochs": 3})
    assert snapshot(finished) == before  # config.json too: the record stays the truth


def test_the_same_config_resumes_and_execution_settings_may_differ(finished, caplog):
    caplog.set_level(logging.INFO, "nas_jax")
    before = json.loads(open(os.path.join(finished, "genotype.json")).read())
    config = changed(select__score_chunk=2, log_every_seconds=1.0)  # not identity
    pipeline.run(config, finished)
    assert json.loads(open(os.path.join(finished, "genotype.json")).read()) == before
    assert "Search already finished" in caplog.text


def test_extend_continues_the_search_and_redoes_the_selection(finished, tmp_path, caplog):
    w = str(tmp_path / "w")
    shutil.copytree(finished, w)
    decisions = read_jsonl(os.path.join(w, "decisions.jsonl"))
    os.makedirs(os.path.join(w, "analysis", "report"))  # of the shorter search: stale now
    pipeline.run(changed(search__epochs=3), w, extend=True)
    assert "--extend: search.epochs 2 -> 3" in caplog.text
    assert not os.path.exists(os.path.join(w, "analysis"))
    assert [r["epoch"] for r in read_jsonl(os.path.join(w, "metrics.jsonl"))] == [0, 1, 2]
    redone = read_jsonl(os.path.join(w, "decisions.jsonl"))
    assert len(redone) == len(decisions)  # redone from scratch, not appended to
    assert [r["event"] for r in redone] == [r["event"] for r in decisions]
    record = json.loads(open(os.path.join(w, "config.json")).read())
    assert record["identity"]["search"]["config"]["search.epochs"] == 3
    assert record["identity"]["select"]["config"]["search.epochs"] == 3
    # Negative control: an extension is only a longer stage; fewer epochs are refused.
    with pytest.raises(workdir.WorkdirError, match=r"search.epochs: 3 -> 2"):
        pipeline.run(changed(search__epochs=2), w, extend=True)


def test_overwrite_discards_the_previous_run(finished, tmp_path):
    w = str(tmp_path / "w")
    shutil.copytree(finished, w)
    config = changed(select__method="magnitude")
    pipeline.run(config, w, overwrite=True)
    g = json.loads(open(os.path.join(w, "genotype.json")).read())
    assert g["method"] == "magnitude"
    assert not os.path.exists(os.path.join(w, "decisions.jsonl"))  # PT's, removed


def test_a_finished_retraining_refuses_another_evaluate_config(tmp_path):
    """The evaluate stage's identity (its section, the seed, the genotype) is recorded; a
    rerun with another learning rate and seed is refused, not reported 'finished'."""
    config = load_config("evaluate", "dataset=digits,smoke")
    config.genotype = "|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|none~0|none~1|none~2|"
    w = str(tmp_path)
    result = pipeline.run(config, w)  # a finished retraining (2 epochs of 2 steps)
    before = snapshot(w)
    config.evaluate.lr, config.seed = 0.1, 5
    with pytest.raises(workdir.WorkdirError, match=r"evaluate run .*evaluate.lr: 0.025 -> 0.1"):
        pipeline.run(config, w)
    with pytest.raises(workdir.WorkdirError, match=r"seed: 2 -> 5"):
        pipeline.run(config, w)
    assert snapshot(w) == before
    config.evaluate.lr, config.seed = 0.025, 2  # negative control: the same config reruns
    assert pipeline.run(config, w)["test_accuracy"] == result["test_accuracy"]


def test_another_backend_needs_its_flag(finished):
    config = changed()
    with open(os.path.join(finished, "config.json")) as f:
        resolved = {**json.load(f)["resolved"], "jax": "9.9.9"}
    with pytest.raises(
        workdir.WorkdirError, match=r"another backend \(jax: '.*' -> '9.9.9'; recorded"
    ):
        workdir.plan(finished, config, resolved)
    p = workdir.plan(finished, config, resolved, allow_backend_change=True)
    assert p.extended is None and not p.redo and "--allow_backend_change" in p.notes[0]


def test_a_record_from_before_identities_is_still_compared(tmp_path):
    """config.json written by an earlier version: the identity is derived from it."""
    config = changed()
    record = json.loads(config.to_json_best_effort())
    record["resolved"] = pipeline.backend_record({})
    (tmp_path / "config.json").write_text(json.dumps(record))
    with pytest.raises(workdir.WorkdirError, match=r"seed: 0 -> 7"):
        workdir.plan(str(tmp_path), changed(seed=7), record["resolved"])
    assert workdir.plan(str(tmp_path), config, record["resolved"]).redo == ()


def test_the_cli_refusal_is_one_line_and_keeps_config_json(finished):
    before = snapshot(finished)
    out = subprocess.run(
        [sys.executable, "-m", "nas_jax.main", "--config", "configs/quickstart.py:smoke",
         f"--workdir={finished}", "--config.seed=1", "--config.xla_cache_dir="],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and out.stderr.startswith("error: ")
    assert "seed: 0 -> 1" in out.stderr
    assert snapshot(finished) == before


# --------------------------------------------------------------------------------------
# One writer (observed: two runs interleaved their epochs in metrics.jsonl)
# --------------------------------------------------------------------------------------


def test_a_second_run_on_a_locked_workdir_refuses_in_one_line(tmp_path):
    w = str(tmp_path)
    with workdir.WorkdirLock(w):
        holder = json.loads((tmp_path / ".lock").read_text())
        assert holder["pid"] == os.getpid()
        out = subprocess.run(
            [sys.executable, "-m", "nas_jax.main", "--config", "configs/quickstart.py:smoke",
             f"--workdir={w}", "--config.xla_cache_dir="],
            capture_output=True, text=True, cwd=ROOT,
        )  # fmt: skip
        assert out.returncode == 2, out.stderr[-2000:]
        assert out.stderr.count("\n") == 1
        assert f"is in use by another run (pid {os.getpid()}" in out.stderr
        assert sorted(os.listdir(w)) == [".lock"]  # it wrote nothing
    assert os.listdir(w) == []  # released: the lock file goes with the holder
    with workdir.WorkdirLock(w):  # negative control: free again
        pass


def test_a_lock_left_by_a_dead_process_is_explained_and_taken_over(tmp_path, caplog):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    (tmp_path / ".lock").write_text(json.dumps({"pid": int(dead), "host": "h", "started": 0}))
    with workdir.WorkdirLock(str(tmp_path)):
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    assert f"ended without releasing it (pid {dead} on h" in caplog.text


@pytest.mark.slow
def test_two_concurrent_runs_one_refuses_and_the_logs_stay_single(tmp_path):
    cmd = [sys.executable, "-m", "nas_jax.main", "--config", "configs/quickstart.py:smoke",
           f"--workdir={tmp_path}"]  # fmt: skip
    first = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    deadline = 120
    import time

    while not (tmp_path / ".lock").exists() and deadline > 0:
        time.sleep(0.1)
        deadline -= 0.1
    second = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert first.wait() == 0
    assert second.returncode == 2 and "is in use by another run" in second.stderr
    epochs = [r["epoch"] for r in read_jsonl(tmp_path / "metrics.jsonl")]
    assert epochs == [0, 1]


# --------------------------------------------------------------------------------------
# Validation at the boundary, through main (observed: garbage results with exit 0)
# --------------------------------------------------------------------------------------

_N = "[" + ", ".join(["('sep_conv_3x3', 0)"] * 8) + "]"
_DARTS = "Genotype(normal={n}, normal_concat={c}, reduce={n}, reduce_concat=[2, 3, 4, 5])"
Q, E = "configs/quickstart.py:smoke", "configs/evaluate.py:dataset=digits,smoke"
# (config file, overrides, what the one error line must name)
MALFORMED = [
    (Q, ["--config.search.lr=-0.5"], "search.lr=-0.5"),
    (Q, ["--config.search.lr=0"], "search.lr=0"),
    (Q, ["--config.search.grad_clip=0"], "search.grad_clip=0"),
    (Q, ["--config.search.grad_clip=-5"], "search.grad_clip=-5"),
    (Q, ["--config.search.momentum=1.5"], "search.momentum=1.5"),
    (Q, ["--config.search.weight_decay=-0.001"], "search.weight_decay=-0.001"),
    (Q, ["--config.search.arch_lr=-0.0003"], "search.arch_lr=-0.0003"),
    (Q, ["--config.search.arch_b2=1.0"], "search.arch_b2=1.0"),
    (Q, ["--config.search.epochs=0"], "search.epochs=0"),
    (Q, ["--config.search.pgd_steps=0"], "search.pgd_steps=0"),
    (Q, ["--config.search.epsilon_min=0.5"], "search.epsilon_min=0.5"),
    (Q, ["--config.search.lr_min=1.0"], "search.lr_min=1.0"),
    (Q, ["--config.data.pad=-1"], "data.pad=-1"),
    (Q, ["--config.data.batch_size=0"], "data.batch_size=0"),
    (Q, ["--config.data.train_portion=1.5"], "data.train_portion=1.5"),
    (Q, ["--config.data.cutout_prob=2.0"], "data.cutout_prob=2.0"),
    (Q, ["--config.data.name=mnist2"], "data.name='mnist2'"),
    ("configs/quickstart.py:smoke,space=s5", ["--config.model.layers=1"], "model.layers=1"),
    (Q, ["--config.model.C=3"], "model.C=3"),
    (Q, ["--config.model.space=s9"], "model.space='s9'"),
    (Q, ["--config.search.method=dartz"], "search.method='dartz'"),
    (Q, ["--config.select.method=ptx"], "select.method='ptx'"),
    (Q, ["--config.select.tune_epochs=-1"], "select.tune_epochs=-1"),
    (Q, ["--config.select.tune_lr_factor=0.0"], "select.tune_lr_factor=0.0"),
    (Q, ["--config.evaluate.drop_path_prob=1.0"], "evaluate.drop_path_prob=1.0"),
    (Q, ["--config.evaluate.label_smoothing=1.0"], "evaluate.label_smoothing=1.0"),
    (Q, ["--config.evaluate.lr_gamma=0.0"], "evaluate.lr_gamma=0.0"),
    (Q, ["--config.num_seeds=0"], "num_seeds=0"),
    (Q, ["--config.seed=-1"], "seed=-1"),
    (Q, ["--config.compute_dtype=float8"], "compute_dtype='float8'"),
    (Q, ["--config.divergence_factor=-1.0"], "divergence_factor=-1.0"),
    ("configs/quickstart.py:smoke=maybe", [], "smoke='maybe'"),
    ("configs/quickstart.py:space=s42", [], "'s42'"),
    ("configs/quickstart.py:bogus=1", [], "'bogus'"),
    (E, ["--config.evaluate.layers=2", "--config.genotype=DARTS_V2"], "evaluate.layers=2"),
    (E, ["--config.genotype=" + _DARTS.format(n=_N, c="range(0, 10000000)")], "range(0, 10"),
    (E, ["--config.genotype=" + _DARTS.format(n=_N, c="[2, 3, 9]")], "[2, 3, 9]"),
    (E, ["--config.genotype=" + _DARTS.format(n=_N.replace("3x3", "9x9"), c="[2, 3]")],
     "'sep_conv_9x9'"),
    (E, ["--config.genotype=" + _DARTS.format(n=_N.replace("0)", "5)"), c="[2]")], "5)"),
    (E, ["--config.genotype=|nor_conv_3x3~0|+|none~0|"], "|nor_conv_3x3~0|+|none~0|"),
    (E, ["--config.genotype=|conv_9x9~0|+|none~0|none~1|+|none~0|none~1|none~2|"],
     "'conv_9x9'"),
    (E, ["--config.genotype=__import__('os').system('touch pwned')"], "__import__('os')"),
    (E, ["--config.genotype=" + "x" * 5000], "'xxxxxxxx"),
    (E, ["--config.genotype=Genotype(" + "(" * 3000 + ")"], "Genotype(((("),
    (E, ["--config.genotype=no/such/genotype.json"], "no/such/genotype.json"),
]  # fmt: skip

# Runs `nas_jax.main` once per case in a child forked from one process that imported it
# (a fresh interpreter per case costs ~3 s); returns [{code, stderr}].
_DRIVER = textwrap.dedent("""
    import json, os, sys, traceback
    from absl import app
    from nas_jax import main as m
    from nas_jax import ops, pipeline  # imported once, before forking (no backend started)
    results = []
    for argv in json.loads(sys.stdin.read()):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r); os.dup2(w, 1); os.dup2(w, 2)
            sys.argv = ["nas_jax.main", *argv]
            code = 0
            try:
                app.run(m.main, flags_parser=m.parse_flags)
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else int(e.code is not None)
            except BaseException:
                traceback.print_exc(); code = 1
            sys.stdout.flush(); sys.stderr.flush()
            os._exit(code)
        os.close(w)
        chunks = []
        while chunk := os.read(r, 1 << 16):
            chunks.append(chunk)
        os.close(r)
        _, status = os.waitpid(pid, 0)
        results.append({"code": os.waitstatus_to_exitcode(status),
                        "stderr": b"".join(chunks).decode()})
    print(json.dumps(results))
""")


def test_malformed_values_and_genotypes_end_in_one_line_and_write_nothing(tmp_path):
    assert len(MALFORMED) >= 30 and len({str(c) for c in MALFORMED}) == len(MALFORMED)
    argvs, dirs = [], []
    for k, (config, overrides, _) in enumerate(MALFORMED):
        d = tmp_path / f"w{k}"
        if k % 2:
            d.mkdir()  # an existing empty workdir, and (even cases) none at all
        dirs.append(d)
        argvs.append([f"--config={ROOT}/{config}", f"--workdir={d}", "--config.xla_cache_dir=",
                      *overrides])  # fmt: skip
    out = subprocess.run([sys.executable, "-c", _DRIVER], input=json.dumps(argvs),
                         capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": ROOT})  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads(out.stdout.splitlines()[-1])
    for (config, overrides, names), d, r in zip(MALFORMED, dirs, results, strict=True):
        case = f"{config} {' '.join(overrides)[:120]}: {r['stderr'][-600:]}"
        assert r["code"] == 2, case
        lines = r["stderr"].splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), case
        assert names in lines[0], case
        assert len(lines[0]) < 600, case
        assert (os.listdir(d) == []) if d.exists() else True, case
        assert d.exists() == (dirs.index(d) % 2 == 1), case
    assert not (tmp_path / "pwned").exists()


def test_a_supernet_without_a_normal_cell_is_refused():
    """Observed: `:space=s5 --config.model.layers=1` searched a network of one reduction
    cell and wrote a normal cell of eight max_pool_3x3."""
    config = load_config("quickstart", "smoke,space=s5")
    config.model.layers = 2  # reduction cells at 0 and 1: no normal cell
    with pytest.raises(config_lib.ConfigError, match=r"model.layers=2 is too few"):
        pipeline.validate(config)
    config.model.layers = 3  # negative control
    pipeline.validate(config)


def test_boolean_config_args_accept_only_true_or_false():
    parse = config_lib.parse_arg
    assert parse("smoke", smoke=False).smoke and not parse("smoke=false", smoke=True).smoke
    assert parse("smoke=TRUE", smoke=False).smoke
    with pytest.raises(config_lib.ConfigError, match=r"smoke='maybe' is not accepted"):
        parse("smoke=maybe", smoke=False)
    with pytest.raises(config_lib.ConfigError, match=r"layers='x' must be of type int"):
        parse("layers=x", layers=3)


def test_every_rule_accepts_the_defaults_and_rejects_values_past_its_bounds():
    config_lib.check_rules(config_lib.base_config())  # the defaults are valid
    past = {">": lambda b: b, ">=": lambda b: b - 1, "<": lambda b: b, "<=": lambda b: b + 0.5}
    inside = {">": lambda b: b + 1, ">=": lambda b: b, "<": lambda b: b - 0.5,
              "<=": lambda b: b}  # fmt: skip
    for name, rule in config_lib.RULES.items():
        if rule == "bool":
            config_lib.check_bool(name, False)
            with pytest.raises(config_lib.ConfigError, match=rf"{name}=1 must be True or False"):
                config_lib.check_bool(name, 1)
            continue
        kind, *bounds = rule.split()
        for op, b in zip(bounds[::2], bounds[1::2], strict=True):
            bad = past[op](float(b))
            with pytest.raises(config_lib.ConfigError, match=rf"{name}=.* must be .*{op} {b}"):
                config_lib.check_number(name, int(bad) if kind == "int" else bad, rule)
            if len(bounds) == 2:  # one bound: the value just inside passes
                ok = inside[op](float(b))
                config_lib.check_number(name, int(ok) if kind == "int" else ok, rule)
        with pytest.raises(config_lib.ConfigError, match=name):
            config_lib.check_number(name, float("nan"), rule)
        with pytest.raises(config_lib.ConfigError, match=name):
            config_lib.check_number(name, True, rule)


# --------------------------------------------------------------------------------------
# Divergence and the one error path
# --------------------------------------------------------------------------------------


class _Toy:
    """A stage whose loss is given per epoch (the loop's growth guard in isolation)."""

    name, steps_per_epoch = "toy", 1

    def __init__(self, losses, factor):
        self.losses, self.divergence = losses, ("train_loss", factor)

    def step(self, state, keys, shared, inputs):
        import jax.numpy as jnp

        return state._replace(step=state.step + 1), {"x": jnp.float32(0.0)}

    def epoch_inputs(self, epoch):
        return {}

    def epoch_record(self, state, sums, epoch, seconds, member):
        return {"epoch": epoch, "train_loss": self.losses[epoch]}

    def progress_fields(self, records):
        return {}

    def checkpoint_due(self, epoch):
        return False

    def checkpoint_meta(self, epoch, member):
        return {}


def test_a_loss_far_above_its_start_stops_the_run(tmp_path):
    from typing import NamedTuple

    import jax.numpy as jnp

    from nas_jax.reporting import MetricsWriter, Progress

    class S(NamedTuple):
        step: jnp.ndarray

    def run(losses, factor, start=0):
        metrics = MetricsWriter(str(tmp_path), tensorboard=False)
        loop = loop_lib.EpochLoop(_Toy(losses, factor), keys=None, shared=None,
                                  runs=[loop_lib.RunFiles(metrics)],
                                  progress=Progress("toy", len(losses), 0))  # fmt: skip
        return loop.run(S(jnp.int32(start)), range(start, len(losses)))

    with pytest.raises(loop_lib.NonFiniteError, match=r"train_loss=56 in epoch 2 is over 10 x "
                                                      r"its first epoch's 2.3"):  # fmt: skip
        run([2.3, 5.0, 56.0], 10.0)
    assert [r["epoch"] for r in read_jsonl(tmp_path / "metrics.jsonl")] == [0, 1]
    # A resumed run compares with the first epoch in metrics.jsonl, not its own first.
    with pytest.raises(loop_lib.NonFiniteError, match=r"first epoch's 2.3"):
        run([2.3, 5.0, 56.0], 10.0, start=2)
    os.remove(tmp_path / "metrics.jsonl")
    run([2.3, 5.0, 56.0], 0.0)  # negative controls: off, and a loss that only grows a bit
    os.remove(tmp_path / "metrics.jsonl")
    run([2.3, 5.0, 22.0], 10.0)


def test_a_full_disk_is_one_line_naming_the_path(tmp_path, monkeypatch, capsys):
    """ENOSPC anywhere below the pipeline (here: writing config.json) is exit 2 with one
    line; the traceback of a real bug is kept, preceded by one summary line."""
    real_open = open

    def full(path, mode="r", *args, **kwargs):
        if "w" in mode and str(path).endswith(".json.tmp"):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(main_lib, "_CONFIG", type("C", (), {"value": changed()})())
    monkeypatch.setattr(main_lib, "_WORKDIR", type("W", (), {"value": str(tmp_path)})())
    for name in ("_EXTEND", "_OVERWRITE", "_ALLOW_BACKEND", "_PRINT", "_CHECK"):
        monkeypatch.setattr(main_lib, name, type("F", (), {"value": False})())
    monkeypatch.setattr(reporting, "setup_logging", lambda: None)  # keep pytest's capture
    monkeypatch.setattr(main_lib, "_exit_now", sys.exit)  # not os._exit: pytest goes on
    monkeypatch.setattr("builtins.open", full)
    with pytest.raises(SystemExit) as e:
        main_lib.main(["nas_jax.main"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: disk full (")
    assert "config.json.tmp): no space left on device; free space and rerun" in err[0]
    monkeypatch.setattr("builtins.open", real_open)

    def bug(*args, **kwargs):
        raise TypeError("a bug")

    monkeypatch.setattr(pipeline, "run", bug)
    with pytest.raises(TypeError):
        main_lib.main(["nas_jax.main"])
    err = capsys.readouterr().err
    assert err.startswith("error: unexpected TypeError (a bug; the traceback follows): a bug")


@pytest.mark.slow
def test_a_real_full_disk_ends_in_one_error_line_and_resumes_exactly(tmp_path):
    """On a 600 KB tmpfs the first search checkpoint fits and the second does not (orbax
    raises tensorstore's RESOURCE_EXHAUSTED); after the disk grows, the rerun resumes to the
    uninterrupted result. Needs permission to mount a tmpfs (root)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:  # fmt: skip
        pytest.skip("cannot mount a tmpfs here")
    try:
        cmd = [sys.executable, "-m", "nas_jax.main", "--config", "configs/quickstart.py:smoke",
               "--config.xla_cache_dir="]  # fmt: skip
        full = subprocess.run([*cmd, f"--workdir={mnt / 'w'}"], capture_output=True, text=True,
                              cwd=ROOT)  # fmt: skip
        assert full.returncode == 2, full.stderr[-3000:]
        last = full.stderr.strip().splitlines()[-1]
        assert last.startswith("error: disk full (") and "resumes from its last checkpoint" in last
        assert "error: unexpected" not in full.stderr
        subprocess.run(["mount", "-o", "remount,size=50m", str(mnt)], check=True)
        resumed = subprocess.run([*cmd, f"--workdir={mnt / 'w'}"], capture_output=True,
                                 text=True, cwd=ROOT)  # fmt: skip
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        ref = subprocess.run([*cmd, f"--workdir={tmp_path / 'ref'}"], capture_output=True,
                             text=True, cwd=ROOT)  # fmt: skip
        assert ref.returncode == 0
        for name in ("genotype.json", "decisions.jsonl"):
            assert (mnt / "w" / name).read_text() == (tmp_path / "ref" / name).read_text()
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)
