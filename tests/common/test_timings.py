"""Each command's wall time, as `ctxtag summary` reads it back."""

from __future__ import annotations

from ctxtag.common import timings


def test_the_last_run_of_each_step_in_the_order_they_last_ended(tmp_path):
    path = tmp_path / "data" / "timings.jsonl"
    assert timings.latest(path) == {}
    timings.record(path, "synth", 12.345)
    timings.record(path, "train@none", 20.0)
    timings.record(path, "synth", 11.0)                   # a rerun replaces the earlier figure
    with path.open("a") as fh:
        fh.write('{"step": "evaluate", "seco')           # a writer killed mid-line
    got = timings.latest(path)
    assert list(got) == ["train@none", "synth"]
    assert got["synth"]["seconds"] == 11.0 and got["train@none"]["seconds"] == 20.0
    timings.record(path, "evaluate", 3.0)                 # the torn line does not hide the next one
    assert timings.latest(path)["evaluate"]["seconds"] == 3.0


def test_the_cli_names_a_step_by_its_item(tmp_path, monkeypatch):
    from ctxtag.cli import build_parser, step_name
    from ctxtag.config import Params

    params = Params()
    parse = build_parser().parse_args
    assert step_name(params, parse(["train", "--loss", "none"])) == "train@none"
    assert step_name(params, parse(["train"])) == f"train@{params.train.loss}"
    assert step_name(params, parse(["register", "--family", "context"])) == "register@context"
    assert step_name(params, parse(["label"])) == "label"
