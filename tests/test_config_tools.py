"""Config discovery (issue 16): --print_config, --check, the spellings of stages."""

import json
import os
import subprocess
import sys

import pytest
from test_main import ROOT, load_config
from test_workdir import _DRIVER

from nas_jax import config_doc, config_lib, pipeline, workdir
from nas_jax.workdir import _flat


def test_every_config_key_has_a_meaning_and_no_meaning_is_stale():
    keys = set(_flat(json.loads(config_lib.base_config().to_json_best_effort())))
    assert keys == set(config_doc.MEANINGS)
    assert set(config_lib.RULES) <= keys  # every rule is about a real key
    for key, accepted in config_doc.choices().items():
        assert key in keys and accepted, key


@pytest.mark.parametrize(
    "value",
    ["search,select", "('search', 'select')", "[search, select]", ("search", "select"),
     ["search", "select"], "search, select"],
)  # fmt: skip
def test_stages_accept_the_command_lines_spellings(value):
    assert config_lib.parse_stages(value) == ("search", "select")
    config = load_config("quickstart", "smoke")
    # The command line hands a string over as a 1-tuple (ml_collections' tuple override).
    config.stages = (value,) if isinstance(value, str) else tuple(value)
    pipeline.validate(config)
    assert config.stages == ("search", "select")


def test_a_bad_stage_in_a_comma_list_is_still_one_error():
    config = load_config("quickstart", "smoke")
    config.stages = ("search,selct",)
    with pytest.raises(config_lib.ConfigError, match="stages='selct' is not accepted"):
        pipeline.validate(config)


def run_main(tmp_path, *argvs):
    out = subprocess.run([sys.executable, "-c", _DRIVER], input=json.dumps(list(argvs)),
                         capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": ROOT})  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.splitlines()[-1])


def test_print_config_and_check_tell_without_writing(tmp_path):
    q = f"--config={ROOT}/configs/quickstart.py:smoke"
    w = tmp_path / "w"
    printed, ok, bad, new, typo = run_main(
        tmp_path,
        [q, "--print_config", "--config.select.method=pt_mag", "--config.stages=search,select"],
        [q, "--check", "--config.xla_cache_dir="],
        [q, "--check", "--config.select.method=ptt"],
        [q, "--check", f"--workdir={w}", "--config.stages=search,select"],
        [q, "--check", "--config.search.epoch=3"],
    )
    assert printed["code"] == 0, printed["stderr"][-2000:]
    lines = printed["stderr"].splitlines()  # the driver joins stdout and stderr
    line = next(ln for ln in lines if ln.startswith("select.method ="))
    assert '"pt_mag"' in line and "one of: pt, pt_mag, magnitude" in line
    assert any(ln.startswith('stages = ["search", "select"]') for ln in lines)
    assert any("search.lr = 0.025" in ln and "a number > 0" in ln for ln in lines)
    assert ok["code"] == 0 and "config ok: stages search, select" in ok["stderr"]
    assert bad["code"] == 2 and bad["stderr"].strip().splitlines() == [
        "error: select.method='ptt' is not accepted; accepted: pt, pt_mag, magnitude"
    ]
    assert new["code"] == 0 and f"workdir {w}: new: the run starts there" in new["stderr"]
    assert not w.exists()  # --check writes nothing
    assert typo["code"] == 2 and "did you mean 'epochs'?" in typo["stderr"]
    assert os.listdir(tmp_path) == ["w"] or os.listdir(tmp_path) == []


def test_check_reports_what_a_rerun_would_do(tmp_path):
    config = load_config("quickstart", "smoke")
    w = str(tmp_path)
    # A recorded run of this config (its identity), without running it.
    resolved = pipeline.backend_record({})
    workdir.apply(w, config, resolved, workdir.plan(w, config, resolved))
    lines = pipeline.check(config, w)
    assert lines[-1] == f"workdir {w}: holds search, select of the same config: the run resumes"
    config.seed = 3
    with pytest.raises(workdir.WorkdirError, match="seed: 0 -> 3"):
        pipeline.check(config, w)
    config.seed = 0
    with workdir.WorkdirLock(w):  # in use: the check says so too
        with pytest.raises(workdir.WorkdirError, match="is in use by another run"):
            pipeline.check(config, w)
