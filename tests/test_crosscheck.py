"""benchmarks.crosscheck: the suite's finetune and replay cells agree with Avalanche's Naive and
Replay on a tiny stream, and bad input is refused before any work."""
import math

import pandas as pd
import pytest
from scipy import stats

from benchmarks.crosscheck.__main__ import main
from benchmarks.crosscheck.table import crosscheck, markdown, summary

# two sessions of five classes, 20 to 40 training images per class, 10 test images each
TINY = "digits-lt:B5-C5?n_max=40&ratio=2&test_per_class=10"
SEEDS = [0, 1, 2]


def tolerance(suite: pd.Series, theirs: pd.Series, images: int) -> float:
    """How far two means over seeds may lie apart when only randomness separates them.

    Both sides start from the same weights on the same tensors with the same loss, optimiser
    and memory rule; what differs is the order of the batches and the memory's draw (each
    side's own generator). So the difference of the means over n seeds is noise whose scale
    is the two sides' seed-to-seed spread: its 95% bound is ``t(0.975, n-1) * sqrt((s_suite^2
    + s_avalanche^2) / n)``; and no accuracy moves by less than one test image's share,
    ``100 / images``, so that is the floor."""
    n = len(suite)
    spread = math.sqrt((suite.var() + theirs.var()) / n)
    return max(stats.t.ppf(0.975, n - 1) * spread, 100 / images)


@pytest.fixture(scope="module")
def per_seed():
    return crosscheck(["finetune", "replay"], [TINY], SEEDS, epochs=3, threads=1,
                      progress=False)


@pytest.mark.parametrize("metric", ["last_acc", "last_old_acc"])
def test_finetune_and_replay_agree_with_avalanche_within_seed_noise(per_seed, metric):
    assert set(per_seed["pair"]) == {"finetune / Naive",
                                     "replay concat / Naive + buffer concatenated",
                                     "replay balanced / Replay (ReplayPlugin)"}
    for pair, cells in per_seed.groupby("pair"):
        suite, theirs = cells[f"suite_{metric}"], cells[f"avalanche_{metric}"]
        assert len(suite) == len(SEEDS)
        images = 100 if metric == "last_acc" else 50  # test images of all / the old classes
        gap = abs(suite.mean() - theirs.mean())
        assert gap <= tolerance(suite, theirs, images), (pair, metric, list(suite),
                                                         list(theirs))
    # replay is not finetune: the memory keeps old classes on both sides
    replay = per_seed[per_seed["pair"].str.startswith("replay")]
    finetune = per_seed[per_seed["pair"] == "finetune / Naive"]
    assert (finetune["suite_last_old_acc"] == 0).all()
    assert replay["suite_last_old_acc"].mean() > 20 and replay["avalanche_last_old_acc"].mean() > 20


def test_the_table_pairs_each_seed_and_says_when_zero_lies_in_the_interval(per_seed):
    table = summary(per_seed)
    row = table[(table["pair"] == "finetune / Naive") & (table["metric"] == "last_acc")].iloc[0]
    cells = per_seed[per_seed["pair"] == "finetune / Naive"]
    diff = cells["suite_last_acc"] - cells["avalanche_last_acc"]
    assert row["diff_mean"] == pytest.approx(diff.mean())
    half = stats.t.ppf(0.975, 2) * diff.std() / math.sqrt(3)
    assert row["diff_ci95"] == pytest.approx(half)
    assert row["agrees"] == (abs(diff.mean()) <= half or (diff == 0).all())
    text = markdown(table)
    assert "| finetune / Naive | last_acc | 3 |" in text and "Notes:" in text


@pytest.mark.parametrize("argv, message", [
    (["--methods", "finetune,ewc"], "unknown ewc; accepted: finetune, replay, lwf, icarl, bic"),
    (["--methods", "replay", "--streams", "digits:B0-C2"], "only single-label streams"),
    (["--methods", "replay", "--streams", "nope:B0-C2"], "unknown dataset 'nope'"),
    (["--methods", "replay", "--seeds", "0,x"], "seeds must be integers"),
    (["--methods", "replay", "--epochs", "0"], "argument --epochs"),
    (["--streams", "digits-lt:B0-C2"], "--methods"),
])
def test_bad_input_exits_2_with_one_line_before_any_work(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    assert main([*argv, "--out", str(out)]) == 2
    stdout, err = capsys.readouterr()
    assert stdout == "" and err.count("\n") == 1 and err.startswith("error: ")
    assert message in err
    assert not out.exists()
