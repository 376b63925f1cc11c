"""The report: leaderboard numbers checked by hand on fake records, markdown, plots."""
import math

import pandas as pd
import pytest

from benchmarks import report, stats, tables
from benchmarks.runner.spec import RunSpec
from benchmarks.runner.store import Store

MULTI, SINGLE = "digits:B0-C2", "digits-lt:B0-C2"


def record(method, seed, avg, stream=MULTI, status="done", version="v1", hparams=None):
    """A record whose per-session headline is ``avg - 5, avg + 5`` (so its mean is ``avg``)."""
    spec = RunSpec(method, stream, seed, hparams or {}, {"epochs": 1})
    mode = "multi" if stream == MULTI else "single"
    m = report.SESSION_METRIC[mode]
    sessions = [{"session": t, "n_seen": 2 * (t + 1),
                 "metrics": {m: value, **{f"{g}_{m}": value + i for i, g in
                                          enumerate(report.GROUPS)}}}
                for t, value in enumerate([avg - 5, avg + 5])]
    summary = {f"avg_{m}": avg, f"last_{m}": avg + 5,
               **{f"last_{g}_{m}": avg + 5 + i for i, g in enumerate(report.GROUPS)},
               "forgetting": None if seed else 3.0}
    failed = status == "failed"
    return {"id": spec.id, "spec": spec.to_dict(), "status": status,
            "error": "ValueError: loss is NaN" if failed else None,
            "stream": {"label_mode": mode}, "sessions": [] if failed else sessions,
            "summary": None if failed else summary, "wall_time_s": 10.0 + seed,
            "code_version": version}


RECORDS = [record("toy", 0, 40.0), record("toy", 1, 44.0), record("toy", 2, 0, status="failed"),
           record("best", 0, 50.0, version="v0"), record("best", 1, 52.0),
           record("toy", 0, 70.0, stream=SINGLE), record("best", 0, 60.0, stream=SINGLE),
           record("toy", 0, 10.0, hparams={"alpha": 2.0})]


@pytest.fixture
def board():
    return report.leaderboard(report.per_seed(RECORDS, current="v1"))


def test_leaderboard_means_and_stds_by_hand(board):
    toy = board[(board["stream"] == MULTI) & (board["method"] == "toy")
                & (board["config"] == "epochs=1")].iloc[0]
    assert toy["n_seeds"] == 2  # the failed cell does not count
    assert toy["avg_mAP_mean"] == pytest.approx(42.0)
    assert toy["avg_mAP_std"] == pytest.approx(math.sqrt(8.0))  # sample std of 40 and 44
    assert toy["last_tail_mAP_mean"] == pytest.approx(49.0)
    assert toy["forgetting_mean"] == pytest.approx(3.0)  # None values are left out
    assert toy["wall_time_s_mean"] == pytest.approx(10.5)
    single = board[board["stream"] == SINGLE]
    assert single["n_seeds"].tolist() == [1, 1] and single["avg_acc_std"].isna().all()
    assert single["avg_mAP_mean"].isna().all() and board["avg_acc_mean"].notna().sum() == 2


def test_rows_are_per_config_sorted_by_headline_and_flag_other_code(board):
    rows = list(zip(board["stream"], board["method"], board["config"]))
    assert rows == [(SINGLE, "toy", "epochs=1"), (SINGLE, "best", "epochs=1"),  # by name
                    (MULTI, "best", "epochs=1"), (MULTI, "toy", "epochs=1"),
                    (MULTI, "toy", "alpha=2.0, epochs=1")]
    assert board["code_versions"].tolist() == ["v1", "v1", "v0; v1", "v1", "v1"]
    assert board["stale"].tolist() == [False, False, True, False, False]
    assert report.leaderboard(report.per_seed(RECORDS, current="v2"))["stale"].all()


def test_per_seed_lists_every_cell_with_its_status():
    seeds = report.per_seed(RECORDS)
    assert len(seeds) == len(RECORDS)
    failed = seeds[seeds["status"] == "failed"].iloc[0]
    assert failed["error"] == "ValueError: loss is NaN" and pd.isna(failed["avg_mAP"])


def test_render_writes_csvs_markdown_and_plots_and_the_cli_rerenders(tmp_path, capsys):
    store = Store(tmp_path)
    for r in RECORDS:
        store.write(r)
    paths = report.render(tmp_path, current="v1")
    csv = pd.read_csv(tmp_path / "leaderboard.csv")
    assert len(csv) == 5 and csv.loc[3, "avg_mAP_mean"] == pytest.approx(42.0)
    md = (tmp_path / "leaderboard.md").read_text()
    assert f"## {MULTI} (multi-label)" in md and f"## {SINGLE} (single-label)" in md
    # 40 and 44: mean 42, s = 2.83, t(0.975, 1) = 12.706 -> 12.706 * 2.83 / sqrt(2) = 25.41,
    # shown to its one significant digit's place: 42 ± 25; 12.71 starts with 1: two digits
    assert "| toy | epochs=1 | 2 | 42 ± 25 |" in md
    assert "| best † | epochs=1 | 2 | 51 ± 13 |" in md and "--rerun" in md
    plots = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert plots == sorted([f"{slug}_{kind}.png" for slug in ("digits_B0_C2", "digits_lt_B0_C2")
                            for kind in ("sessions", "last", "groups", "per_class")]
                           + ["summary_improvement.png", "summary_iqm.png"])
    summary = (tmp_path / "summary.md").read_text()
    assert "Friedman test" in summary and "Not compared (missing on some stream): toy " \
        "(alpha=2.0" in summary
    assert "No Nemenyi diagram: with 2 methods on 2 streams" in summary  # CD 1.39 > 1
    assert all((tmp_path / "plots" / p).read_bytes()[:4] == b"\x89PNG" for p in plots)
    (tmp_path / "leaderboard.csv").unlink()
    assert report.main([str(tmp_path)]) == 0
    assert capsys.readouterr().out.split() == [str(p) for p in paths]
    again = pd.read_csv(tmp_path / "leaderboard.csv")
    pd.testing.assert_frame_equal(again.drop(columns="stale"), csv.drop(columns="stale"))
    assert again["stale"].all()  # against the checkout's code version, "v1" is other code
    assert report.main([str(tmp_path), "--against", "v1"]) == 0  # a published folder's version
    assert pd.read_csv(tmp_path / "leaderboard.csv")["stale"].tolist() == csv["stale"].tolist()
    assert "the stale column compare the records with v1 (benchmarks.report --against)" in \
        (tmp_path / "leaderboard.md").read_text()
    capsys.readouterr()
    assert report.main([str(tmp_path), "--against", "v9"]) == 2
    assert capsys.readouterr().err == (f"error: --against v9: no record of {tmp_path} carries "
                                       "that code version; accepted: v0, v1\n")
    assert report.main([str(tmp_path / "nothing")]) == 2
    assert "holds no records/" in capsys.readouterr().err


def test_tensorboard_logs_each_session_metric(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    report.write_tensorboard(RECORDS[0], tmp_path)
    events = EventAccumulator(str(tmp_path / RECORDS[0]["id"]))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("session/mAP")] == [(0, 35.0), (1, 45.0)]
    assert "session/tail_mAP" in events.Tags()["scalars"]


def test_ci95_is_the_student_t_half_width_and_absent_below_two_seeds():
    # 1, 2, 6: mean 3, s = sqrt(((4 + 1 + 9) / 2)) = sqrt(7); t(0.975, 2) = 4.3027
    assert stats.ci95([1.0, 2.0, 6.0]) == pytest.approx(4.3027 * math.sqrt(7) / math.sqrt(3),
                                                        rel=1e-4)
    assert math.isnan(stats.ci95([5.0])) and math.isnan(stats.ci95([]))


def test_paired_differences_by_hand_and_only_over_shared_seeds():
    rows = [("replay", 0, 50.0), ("replay", 1, 52.0), ("replay", 2, 60.0),
            ("new", 0, 53.0), ("new", 1, 54.0), ("new", 2, 64.0), ("new", 3, 99.0),
            ("lone", 5, 10.0)]
    seeds = pd.DataFrame([{"stream": MULTI, "method": m, "config": "", "hparams_config": "",
                           "train_config": "", "threads": 2, "seed": s, "avg_mAP": v}
                          for m, s, v in rows])
    pairs = stats.paired_differences(seeds, seeds["method"] == "replay", "replay", ["avg_mAP"],
                                     ["stream", "train_config", "threads"])
    new = pairs[pairs["method"] == "new"].iloc[0]
    # differences 3, 2, 4 (seed 3 has no baseline): mean 3, s = 1, t(0.975, 2) = 4.3027
    assert new["n_pairs"] == 3 and new["diff_mean"] == pytest.approx(3.0)
    assert new["diff_ci95"] == pytest.approx(4.3027 / math.sqrt(3), rel=1e-4)
    assert new["significant"]  # 3 - 2.48 > 0
    assert "lone" not in set(pairs["method"])  # no shared seed: no row


def test_one_pair_has_no_interval_and_is_never_significant():
    seeds = pd.DataFrame([{"stream": MULTI, "method": m, "config": "", "hparams_config": "",
                           "train_config": "", "threads": 2, "seed": 0, "avg_mAP": v}
                          for m, v in (("replay", 50.0), ("new", 70.0))])
    row = stats.paired_differences(seeds, seeds["method"] == "replay", "replay", ["avg_mAP"],
                                   ["stream"]).iloc[0]
    assert row["n_pairs"] == 1 and math.isnan(row["diff_ci95"]) and not row["significant"]


def _full_record(method, seed, stream, shift):
    """A record with every field the plots read: sessions, per-class values, class counts."""
    spec = RunSpec(method, stream, seed, {}, {})
    mode = "multi" if stream == MULTI else "single"
    m = report.SESSION_METRIC[mode]
    sessions = [{"session": t, "n_seen": 2 * (t + 1),
                 "metrics": {m: 50 + shift + t, f"old_{m}": 40.0 + shift, f"new_{m}": 60.0},
                 "per_class": [30.0 + c + shift for c in range(2 * (t + 1))]}
                for t in range(3)]
    summary = {f"avg_{m}": 51 + shift, f"last_{m}": 52 + shift, f"last_old_{m}": 40 + shift,
               f"last_new_{m}": 60.0, **{f"last_{g}_{m}": 50.0 + i
                                        for i, g in enumerate(report.GROUPS)},
               "forgetting": 5.0}
    return {"id": spec.id, "spec": spec.to_dict(), "status": "done", "error": None,
            "env": {"threads": 2}, "stream": {"label_mode": mode,
                                              "class_counts": [100, 50, 20, 10, 5, 1]},
            "sessions": sessions, "summary": summary, "wall_time_s": 1.0,
            "code_version": "v1"}


def test_the_report_renders_every_plot_for_a_grid_with_pairs_to_replay(tmp_path):
    store = Store(tmp_path)
    for stream in (MULTI, SINGLE):
        for i, method in enumerate(("replay", "lwf", "better")):
            for seed in (0, 1):
                store.write(_full_record(method, seed, stream, shift=3 * i + seed))
    paths = report.render(tmp_path, current="v1")
    plots = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert len(plots) == 10 and "summary_iqm.png" in plots and all(
        (tmp_path / "plots" / p).read_bytes()[:4] == b"\x89PNG" for p in plots)
    pairs = pd.read_csv(tmp_path / "paired.csv")
    better = pairs[(pairs["method"] == "better") & (pairs["metric"] == "avg_mAP")].iloc[0]
    assert better["diff_mean"] == pytest.approx(6.0) and better["n_pairs"] == 2
    board = pd.read_csv(tmp_path / "leaderboard.csv")
    assert {"last_old_mAP_mean", "last_new_mAP_ci95"} <= set(board.columns)
    md = (tmp_path / "leaderboard.md").read_text()
    assert "Δ avg mAP vs replay" in md and "| better | " in md
    assert tmp_path / "paired.csv" in paths


def test_mean_ranks_friedman_and_critical_difference_against_a_table_worked_by_hand():
    from benchmarks.stats import critical_difference, friedman, mean_ranks

    scores = pd.DataFrame({"a": [90, 80, 70], "b": [85, 82, 60], "c": [70, 60, 50],
                           "d": [60, 90, 40]}, index=["s1", "s2", "s3"])
    # ranks: s1 a1 b2 c3 d4; s2 d1 b2 a3 c4; s3 a1 b2 c3 d4 -> a 5/3, b 2, d 3, c 10/3
    assert mean_ranks(scores).to_dict() == pytest.approx({"a": 5 / 3, "b": 2, "d": 3,
                                                          "c": 10 / 3})
    test = friedman(scores)
    # chi2 = 12*3/(4*5) * (25/9 + 4 + 100/9 + 9 - 4*25/4) = 1.8 * 17/9 = 3.4
    assert test["chi2"] == pytest.approx(3.4)
    assert test["F"] == pytest.approx(2 * 3.4 / (3 * 3 - 3.4))  # Iman-Davenport
    # Demsar's q_0.05 for k = 4 is 2.569: CD = 2.569 * sqrt(4*5 / (6*3))
    assert critical_difference(4, 3) == pytest.approx(2.569 * (20 / 18) ** 0.5, abs=1e-3)
    assert critical_difference(4, 14) == pytest.approx(1.25, abs=0.01)  # Demsar's example
    ties = pd.DataFrame({"a": [1, 2], "b": [1, 1]})
    assert mean_ranks(ties).to_dict() == {"a": 1.25, "b": 1.75}


def _variant(method, seed, value, hparams=None, train=None):
    """A done record of ``method`` with overrides, whose summary metrics all equal ``value``."""
    spec = RunSpec(method, MULTI, seed, hparams or {}, train or {})
    return {"id": spec.id, "spec": spec.to_dict(), "status": "done", "error": None,
            "env": {"threads": 1}, "stream": {"label_mode": "multi", "class_counts": [5, 1]},
            "sessions": [{"session": 0, "n_seen": 2, "metrics": {"mAP": value},
                          "per_class": [value, value]}],
            "summary": {"avg_mAP": value, "last_mAP": value}, "wall_time_s": 1.0,
            "code_version": "v1"}


@pytest.fixture
def variants(tmp_path):
    """replay at its defaults (10), with negatives=seen (20) and under selection=prs (30),
    selection=herding (35); krt at its defaults (50); seeds 0 and 1 (+1 on seed 1)."""
    store = Store(tmp_path)
    for seed in (0, 1):
        for method, value, hparams, train in (
                ("replay", 10, None, None), ("replay", 20, {"negatives": "seen"}, None),
                ("replay", 30, None, {"selection": "prs"}),
                ("replay", 35, None, {"selection": "herding"}), ("krt", 50, None, None)):
            store.write(_variant(method, seed, value + seed, hparams, train))
    return tmp_path


def _diffs(folder):
    pairs = pd.read_csv(folder / "paired.csv")
    pairs = pairs[pairs["metric"] == "avg_mAP"]
    return {(m, "" if pd.isna(c) else c): d for m, c, d in
            zip(pairs["method"], pairs["config"], pairs["diff_mean"])}


def test_a_baseline_can_name_an_override_or_a_training_flag(variants, capsys):
    assert report.main([str(variants), "--baseline", "replay(negatives=seen)"]) == 0
    # krt meets replay(negatives=seen) under the same (default) training config only
    assert _diffs(variants) == {("replay", ""): -10, ("krt", ""): 30}
    assert report.main([str(variants), "--baseline", "replay[selection=herding]"]) == 0
    # a training-flag baseline is met by every row of the stream, whatever its flags
    assert _diffs(variants) == {("replay", ""): -25, ("replay", "negatives=seen"): -15,
                                ("replay", "selection=prs"): -5, ("krt", ""): 15}
    assert "Δ avg mAP vs replay[selection=herding]" in (variants / "leaderboard.md").read_text()


def test_the_baseline_is_recorded_so_a_rerender_pairs_alike(variants, capsys):
    assert report.main([str(variants), "--baseline", "krt"]) == 0
    assert (variants / "baseline.txt").read_text() == "krt\n"
    assert report.main([str(variants)]) == 0  # no --baseline: the recorded one, not replay
    assert set(pd.read_csv(variants / "paired.csv")["baseline"]) == {"krt"}
    assert _diffs(variants)[("replay", "")] == -40


@pytest.mark.parametrize("name, message", [
    ("replay(negatives", "is not METHOD, METHOD(key=value, ...)"),
    ("replay(seen)", "expected key=value, got 'seen'"),
    ("lwf", "lwf has no cells in"),
])
def test_a_bad_baseline_is_one_line_and_exit_2(variants, capsys, name, message):
    before = sorted(p.name for p in variants.iterdir())
    assert report.main([str(variants), "--baseline", name]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err
    assert sorted(p.name for p in variants.iterdir()) == before


def test_the_baseline_rule_given_then_recorded_then_replay_then_first(tmp_path):
    from benchmarks import baseline

    assert baseline.choose(tmp_path, None, ["toy", "replay"]) == "replay"
    assert baseline.choose(tmp_path, None, ["toy", "lwf"]) == "toy"
    baseline.record(tmp_path, "lwf")
    assert baseline.choose(tmp_path, None, ["toy", "replay"]) == "lwf"
    assert baseline.choose(tmp_path, "replay( negatives = seen )", []) == \
        "replay(negatives=seen)"


def test_headline_values_are_rounded_to_what_their_interval_supports():
    assert tables.mean_ci(96.0833, 0.9164) == "96.1 ± 0.9"
    assert tables.mean_ci(94.9, 1.5828) == "94.9 ± 1.6"  # a half-width starting with 1
    assert tables.mean_ci(42.0, 25.41) == "42 ± 25"
    assert tables.mean_ci(0.0123, 0.0004) == "0.012 ± 0.000"  # at most 3 decimals
    assert tables.mean_ci(51.234, float("nan")) == "51.2"  # one seed: no interval
    assert tables.short_config("lr=0.0032103822667175212, negatives=seen, w=1.5") == \
        "lr=0.00321, negatives=seen, w=1.5"
