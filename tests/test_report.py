"""The report: leaderboard numbers checked by hand on fake records, markdown, plots."""
import math

import pandas as pd
import pytest

from benchmarks import report
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
    assert board["code_versions"].tolist() == [1, 1, 2, 1, 1]
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
    assert "| toy | epochs=1 | 2 | 42.00 ± 2.83 |" in md
    assert "| best † | epochs=1 | 2 | 51.00 ± 1.41 |" in md and "--rerun" in md
    plots = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert plots == sorted(f"{slug}_{kind}.png" for slug in ("digits_B0_C2", "digits_lt_B0_C2")
                           for kind in ("sessions", "last", "groups"))
    assert all((tmp_path / "plots" / p).read_bytes()[:4] == b"\x89PNG" for p in plots)
    (tmp_path / "leaderboard.csv").unlink()
    assert report.main([str(tmp_path)]) == 0
    assert capsys.readouterr().out.split() == [str(p) for p in paths]
    again = pd.read_csv(tmp_path / "leaderboard.csv")
    pd.testing.assert_frame_equal(again.drop(columns="stale"), csv.drop(columns="stale"))
    assert again["stale"].all()  # against the checkout's code version, "v1" is other code
    assert report.main([str(tmp_path / "nothing")]) == 2
    assert "holds no records/" in capsys.readouterr().err


def test_tensorboard_logs_each_session_metric(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    report.write_tensorboard(RECORDS[0], tmp_path)
    events = EventAccumulator(str(tmp_path / RECORDS[0]["id"]))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("session/mAP")] == [(0, 35.0), (1, 45.0)]
    assert "session/tail_mAP" in events.Tags()["scalars"]
