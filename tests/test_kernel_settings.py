"""Backend settings (`nas_jax.kernels.settings`): config over environment over default,
one-line errors, and `configure` fixing what trace-time code reads."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import pytest

from nas_jax import kernels
from nas_jax.kernels import allocator, settings

ENV = settings.ENV_VARS


@pytest.fixture(autouse=True)
def _lazy_settings(monkeypatch):
    for var in ENV.values():
        monkeypatch.delenv(var, raising=False)
    yield
    settings.reset()  # back to lazy resolution for the other tests


def test_config_wins_over_env_over_default(monkeypatch):
    got = kernels.configure({})
    assert (got["materialize"], got["source"]["materialize"]) == ("cond", "default for cpu")
    monkeypatch.setenv(ENV["materialize"], "none")
    monkeypatch.setenv(ENV["depthwise"], "shift")
    got = kernels.configure({})
    assert (got["materialize"], got["source"]["materialize"]) == ("none", "env NAS_JAX_MATERIALIZE")
    assert got["depthwise"] == "shift" and got["native_kernels"] == "not used"
    got = kernels.configure({"materialize": "cond", "depthwise": "xla"})
    assert (got["materialize"], got["source"]["materialize"]) == ("cond", "config")
    assert (got["depthwise"], got["source"]["depthwise"]) == ("xla", "config")
    # Negative control: 'auto' in the config is no choice, so the environment still wins.
    got = kernels.configure({"materialize": "auto", "depthwise": None})
    assert got["materialize"] == "none" and got["depthwise"] == "shift"


def test_configure_returns_json_and_accepts_a_config_dict():
    section = ml_collections.ConfigDict(
        {"depthwise": "shift_vjp", "materialize": "none", "malloc": "auto"}
    )
    got = kernels.configure(section)
    assert json.loads(json.dumps(got)) == got
    assert set(got) == {"backend", "depthwise", "materialize", "malloc", "native_kernels", "source"}
    assert got["backend"] == jax.default_backend()
    assert got["depthwise"] == "shift_vjp" and got["materialize"] == "none"
    assert kernels.describe() == got and kernels.active().materialize == "none"


@pytest.mark.parametrize("name", list(settings.ACCEPTED))
def test_bad_values_are_one_line_errors_naming_value_origin_and_accepted(name, monkeypatch):
    monkeypatch.setattr(allocator, "_done", False)
    with pytest.raises(ValueError) as err:
        kernels.configure({name: "bogus", "malloc": "reuse"} if name != "malloc" else {name: "x"})
    msg = str(err.value)
    assert "\n" not in msg and "from the config" in msg and f"kernels.{name}=" in msg
    assert "accepted: auto, " + ", ".join(settings.ACCEPTED[name]) in msg
    assert not allocator.applied()  # every value is checked before anything is applied
    monkeypatch.setenv(ENV[name], "bogus")
    with pytest.raises(ValueError, match=rf"'bogus' from \${ENV[name]} is not accepted"):
        kernels.configure({})
    with pytest.raises(ValueError, match="'bogus'"):
        kernels.describe()
    # An explicit config value wins, so the bad environment value is never read.
    kernels.configure({name: settings.ACCEPTED[name][-1]})


def test_unknown_section_key_is_an_error():
    with pytest.raises(ValueError, match=r"\['tap'\]; accepted: depthwise, materialize, malloc"):
        kernels.configure({"tap": "rows"})


def _count(fn, x, name):
    return str(jax.make_jaxpr(fn)(x)).count(name)


def test_configured_values_are_what_traces_read(monkeypatch):
    x = jnp.ones((2, 6, 6, 3))
    w = jnp.ones((3, 3, 1, 3))
    conv = lambda impl=None: lambda x: kernels.depthwise_conv(x, w, padding=1, impl=impl)
    kernels.configure({"materialize": "cond", "depthwise": "xla"})
    assert _count(kernels.materialize, x, "cond[") == 1
    assert _count(conv(), x, "conv_general_dilated") == 1
    # Once configured, a later environment change does not move the settings.
    monkeypatch.setenv(ENV["materialize"], "none")
    assert _count(kernels.materialize, x, "cond[") == 1
    kernels.configure({"materialize": "none", "depthwise": "shift"})
    assert _count(kernels.materialize, x, "cond[") == 0  # negative control of the count
    assert _count(conv(), x, "conv_general_dilated") == 0
    assert _count(conv("xla"), x, "conv_general_dilated") == 1  # an explicit impl wins
    settings.reset()
    monkeypatch.setenv(ENV["materialize"], "cond")  # lazy again: the environment is read
    assert _count(kernels.materialize, x, "cond[") == 1


def test_env_override_changes_what_is_reported(monkeypatch):
    before = kernels.describe()
    monkeypatch.setenv(ENV["depthwise"], "dense")
    monkeypatch.setenv(ENV["materialize"], "none")
    after = kernels.describe()
    assert (
        (after["depthwise"], after["materialize"])
        == ("dense", "none")
        != (
            before["depthwise"],
            before["materialize"],
        )
    )
    assert after["source"]["depthwise"] == "env NAS_JAX_DEPTHWISE_IMPL"
    assert kernels.configure(None) == after


def test_malloc_reports_what_is_in_effect(monkeypatch):
    monkeypatch.setattr(allocator, "_done", False)
    monkeypatch.setenv(ENV["malloc"], "default")
    got = kernels.configure({})
    assert got["malloc"] == "default" and not allocator.applied()
    assert got["source"]["malloc"] == "env NAS_JAX_MALLOC"
    got = kernels.configure({"malloc": "reuse"})
    assert got["malloc"] == "reuse" and allocator.applied()
    # The allocator cannot be undone: asking for 'default' now reports 'reuse', and why.
    got = kernels.configure({})
    assert got["malloc"] == "reuse" and "applied earlier" in got["source"]["malloc"]


_PROBE = "import json; from nas_jax import kernels; print(json.dumps(kernels.configure({})))"


@pytest.mark.parametrize(
    "env, native_kernels",
    [({"NAS_JAX_NATIVE": "0"}, "disabled: NAS_JAX_NATIVE=0"),
     ({"CXX": "/nonexistent/c++"}, "unavailable: no C++ compiler (/nonexistent/c++)")],
)  # fmt: skip
def test_native_that_cannot_run_reports_the_fallback(env, native_kernels, tmp_path):
    env = {**os.environ, **env, "NAS_JAX_NATIVE_CACHE": str(tmp_path)}
    env.pop(ENV["depthwise"], None)
    proc = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["depthwise"] == "shift_vjp" and got["native_kernels"] == native_kernels
    assert got["source"]["depthwise"] == "default for cpu"


def test_configured_holds_for_a_block_then_restores(monkeypatch):
    monkeypatch.setenv(ENV["materialize"], "none")
    assert settings.current("materialize") == "none"  # lazy: the environment
    with kernels.configured({"materialize": "cond"}) as got:
        assert got["materialize"] == "cond"
        monkeypatch.setenv(ENV["materialize"], "none")  # read once, when configured
        assert settings.current("materialize") == "cond"
    assert settings.current("materialize") == "none"  # lazy again after the block
    # Negative control: plain `configure` stays in effect after the call.
    kernels.configure({"materialize": "cond"})
    assert settings.current("materialize") == "cond"


def test_config_json_records_the_resolved_backend_settings(tmp_path):
    """A lookup run (no compile) through the command line: what `config.kernels` and the
    environment resolved to is in config.json, and a bad value writes nothing."""
    from test_evaluate import ALL_SKIP, ROOT, write_table

    table = write_table(tmp_path / "table.csv")

    def run(name, *overrides, **env):
        out = subprocess.run(
            [sys.executable, "-m", "nas_jax.main", "--config", "configs/evaluate.py",
             f"--workdir={tmp_path / name}", f"--config.genotype={ALL_SKIP}",
             f"--config.evaluate.nb201_table={table}", *overrides],
            capture_output=True, text=True, cwd=ROOT, env={**os.environ, **env},
        )  # fmt: skip
        return out, tmp_path / name / "config.json"

    out, path = run("default")
    assert out.returncode == 0, out.stderr[-2000:]
    resolved = json.loads(path.read_text())["resolved"]
    assert resolved["backend"] == "cpu" and resolved["materialize"] == "cond"
    assert resolved["source"]["materialize"] == "default for cpu"
    assert {"depthwise", "malloc", "native_kernels", "jax", "devices"} <= set(resolved)

    out, path = run("env", **{ENV["materialize"]: "none"})  # the override is recorded
    assert out.returncode == 0, out.stderr[-2000:]
    resolved = json.loads(path.read_text())["resolved"]
    assert resolved["materialize"] == "none"
    assert resolved["source"]["materialize"] == "env NAS_JAX_MATERIALIZE"

    out, path = run(
        "config", "--config.kernels.depthwise=shift_vjp", **{ENV["materialize"]: "none"}
    )
    resolved = json.loads(path.read_text())["resolved"]
    assert (resolved["depthwise"], resolved["source"]["depthwise"]) == ("shift_vjp", "config")

    out, path = run("bad", "--config.kernels.materialize=barrier")
    assert out.returncode == 2 and not path.parent.exists()
    assert out.stderr.strip().splitlines()[-1].startswith("error: kernels.materialize='barrier'")
