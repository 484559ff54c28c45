"""Torn-log recovery (issue 15): a torn last jsonl line is dropped with a warning and a
bad middle line is one error naming file:line."""

import logging

import pytest

from nas_jax import reporting, sweep


def warnings_of(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


# ------------------------------------------------------------------------------------
# jsonl logs
# ------------------------------------------------------------------------------------


def test_torn_last_line_is_dropped_and_bad_middle_line_is_one_error(tmp_path, caplog):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"epoch": 0}\n{"epoch": 1}\n{"epoch": 2, "train_lo')
    caplog.set_level(logging.WARNING, "nas_jax")
    assert reporting.read_jsonl(str(path)) == [{"epoch": 0}, {"epoch": 1}]
    assert f"torn last line of {path}" in warnings_of(caplog)[0]
    assert sweep._last_record(str(path)) == {"epoch": 1}
    w = reporting.MetricsWriter(str(tmp_path), tensorboard=False)
    w.truncate_after("epoch", 5)  # rewrites the log without the torn line
    w.write(2, {"epoch": 2})
    assert path.read_text() == '{"epoch": 0}\n{"epoch": 1}\n{"epoch": 2}\n'

    path.write_text('{"epoch": 0}\n{"epoch": 1, "x\n{"epoch": 2}\n')
    with pytest.raises(reporting.LogError) as e:
        reporting.read_jsonl(str(path))
    assert isinstance(e.value, ValueError)
    assert str(e.value).startswith(f"{path}:2 is not a JSON record") and "\n" not in str(e.value)
    with pytest.raises(reporting.LogError, match=":2 "):
        w.truncate_after("epoch", 1)
    # Negative control: a complete log reads whole, without a warning.
    caplog.clear()
    path.write_text('{"epoch": 0}\n\n{"epoch": 1}\n')
    assert reporting.read_jsonl(str(path)) == [{"epoch": 0}, {"epoch": 1}]
    assert warnings_of(caplog) == []
