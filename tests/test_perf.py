"""The performance harness in quick mode: every row is produced and written; no time is
asserted."""
import json
import math

import pytest
import torch

import methods
from benchmarks import streams
from benchmarks.perf import __main__ as perf
from benchmarks.perf.training import Session
from methods import _registry


@pytest.fixture
def builtin_methods(monkeypatch):
    """The registry holding only the suite's own methods (other tests register toys)."""
    methods.discover()
    own = {k: m for k, m in _registry._METHODS.items() if m.build.__module__.startswith("methods.")}
    monkeypatch.setattr(_registry, "_METHODS", own)


def test_quick_mode_produces_every_row(tmp_path, monkeypatch, capsys, builtin_methods):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "perf.json"
    assert perf.main(["--quick", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    rows = {(r["row"], r["name"]): r for r in report["rows"]}
    assert sorted({r["row"] for r in report["rows"]}) == list(perf.ROWS)
    for (number, name), r in rows.items():
        if number != "6":
            assert isinstance(r["value"], float) and math.isfinite(r["value"]) and r["value"] > 0
    costs = {name.split(", ")[1].split(" /")[0]: r for (n, name), r in rows.items() if n == "2"}
    assert set(costs) == set(_registry.registered())  # every built-in method
    assert costs["finetune"]["value"] == 1.0 and costs["replay"]["target"] == "<= 1.1"
    grid = next(r for (n, _), r in rows.items() if n == "4")
    assert [run["command"].split("--workers ")[1] for run in grid["detail"]["runs"]] == [
        "1", "2", "1 --threads 1"]
    gpu = next(r for (n, _), r in rows.items() if n == "6")
    assert gpu["value"] is None and "no CUDA device" in gpu["detail"]["skipped"]
    printed = capsys.readouterr().out
    assert printed.count("\n| ") == len(report["rows"]) and "| 6 |" in printed
    assert report["quick"] and report["machine"]["cores"] >= 1


def test_the_gpu_row_measures_amp_and_channels_last_loops_on_any_device():
    session = Session("synthetic:B0-C5?classes=10&train=48&test=16&size=16", 0,
                      {"backbone": "smallcnn", "amp": "bf16", "channels_last": True,
                       "epochs": 1, "batch_size": 16, "num_workers": 0}, "cpu")
    got = perf.gpu_row(session, 1, "suite / hand loop")
    assert got["value"] > 0 and got["detail"]["device"] == "cpu"
    assert got["detail"]["samples"] == len(streams.build(session.stream).benchmark
                                           .train_stream[0].dataset)
    assert got["detail"]["train"]["amp"] == "bf16" and got["detail"]["train"]["channels_last"]


def test_a_method_that_breaks_gets_a_failed_row_and_the_others_are_measured(
        monkeypatch, builtin_methods):
    @methods.register("perf_explodes", label_modes={"single"})  # measured on digits-lt
    def build(ctx):
        raise RuntimeError("cannot be built")

    rows = {r["name"]: r for r in perf.cost_rows(perf.SIZES["quick"])}
    broken = rows["per-sample cost, perf_explodes / finetune"]
    assert broken["value"] is None and broken["detail"]["error"] == "RuntimeError: cannot be built"
    assert rows["per-sample cost, lwf / finetune"]["value"] > 0
    assert rows["per-sample cost, finetune / finetune"]["detail"]["stream"].startswith("digits:")


def test_a_broken_row_is_reported_and_the_others_still_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(perf.MEASURES, "4", lambda size: 1 / 0)
    out = tmp_path / "perf.json"
    assert perf.main(["--quick", "--rows", "4,3", "--out", str(out)]) == 1
    rows = json.loads(out.read_text())["rows"]
    assert [r["row"] for r in rows] == ["4", "3"]
    assert rows[0]["value"] is None and "ZeroDivisionError" in rows[0]["detail"]["error"]
    assert rows[1]["value"] > 0
    assert "row 4 failed: ZeroDivisionError" in capsys.readouterr().err


def test_row_2_costs_the_methods_asked_for_with_their_variants(tmp_path, builtin_methods):
    out = tmp_path / "perf.json"
    assert perf.main(["--quick", "--rows", "2", "--methods", "replay,bsce?kd=none",
                      "--repeats", "2", "--out", str(out)]) == 0
    rows = {r["name"]: r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == {f"per-sample cost, {name} / finetune"
                         for name in ("finetune", "replay", "bsce?kd=none")}
    variant = rows["per-sample cost, bsce?kd=none / finetune"]
    assert variant["value"] > 0 and len(variant["detail"]["ratios"]) == 2
    assert variant["target"] is None  # bsce's target is for its defaults


def test_row_2_costs_session_1_of_the_stream_asked_for(tmp_path, builtin_methods):
    out = tmp_path / "perf.json"
    assert perf.main(["--quick", "--rows", "2", "--methods", "replay,lwf", "--stream",
                      "digits:B4-C2?train=300&test=150", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert {r["name"] for r in rows} == {f"per-sample cost, {name} / finetune"
                                         for name in ("finetune", "replay", "lwf")}
    assert {(r["detail"]["stream"], r["detail"]["session"]) for r in rows} == {
        ("digits:B4-C2?test=150&train=300", 1)}


def test_a_variant_changes_what_is_trained(monkeypatch, builtin_methods):
    built = []
    real = methods.MethodContext

    def spy(model, info, hparams, *args):
        built.append(dict(hparams))
        return real(model, info, hparams, *args)

    monkeypatch.setattr(methods, "MethodContext", spy)
    size = dict(perf.SIZES["quick"], cost_variants=perf.cost_variants("bsce?kd=none&kd_weight=2"))
    perf.cost_rows(size)
    bsce = [h for h in built if "kd" in h]  # finetune has no hyperparameters
    assert bsce and all(h["kd"] == "none" and h["kd_weight"] == 2.0 for h in bsce)


@pytest.mark.parametrize("argv, message", [
    (["--rows", "7"], "--rows 7: accepted rows are 1, 2, 3, 4, 5, 6"),
    (["--methods", "nosuch"], "--methods nosuch: unknown method 'nosuch'; known: "),
    (["--methods", "bsce?kd=maybe"], "bsce.kd='maybe' is not accepted; accepted: none, logits"),
    (["--methods", "bsce?kd"], "--methods bsce?kd: a variant is NAME?key=value&key=value"),
    (["--methods", ","], "--methods is empty"),
    (["--repeats", "0"], "argument --repeats: expected an integer >= 1, got '0'"),
    (["--rows", ","], "--rows is empty"),
    (["--out", "."], "is a folder"),
    (["--stream", "digits:B10"], "--stream digits:B10: row 2 costs session 1, and this stream "
                                 "has one session"),
    (["--stream", "nope:B0-C2"], "--stream: unknown dataset 'nope'"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys, tmp_path):
    assert perf.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
