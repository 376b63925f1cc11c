"""What the leaderboard's renderings for readers share (report.html, leaderboard.tex): the
headline columns of a stream, which direction of a metric is better, the best rows of a
column, "mean ± interval" as printed, and the paired differences to the baseline aligned
with the leaderboard's rows."""
from __future__ import annotations

import math
import re

import pandas as pd

# Metrics where a lower value is better; every other summary metric is better higher.
LOWER_IS_BETTER = {"forgetting", "last_mem_FPR", "last_mem_FNR", "last_mem_balance",
                   "wall_time_s"}
ROW = ["stream", "method", "config", "threads"]
# The headline columns of a stream whose session metric is mAP or acc, in the order a reader
# compares them, with their names; F1 scores threshold sigmoid outputs at 0.8
# (benchmarks.metrics). Every other summary metric is in leaderboard.csv (and behind
# report.html's toggle).
HEADLINE = {
    "mAP": {"avg_mAP": "avg mAP", "last_mAP": "last mAP", "last_tail_mAP": "last tail mAP",
            "last_old_mAP": "last old mAP", "last_new_mAP": "last new mAP",
            "last_CF1": "last CF1@0.8", "last_OF1": "last OF1@0.8", "forgetting": "forgetting"},
    "acc": {"avg_acc": "avg acc", "last_acc": "last acc", "last_tail_acc": "last tail acc",
            "last_old_acc": "last old acc", "last_new_acc": "last new acc",
            "forgetting": "forgetting"},
}
# The few that report.html shows first and a paper's table holds (leaderboard.tex): average,
# last, last on the tail, and forgetting.
SHORT = 3


def metrics(rows: pd.DataFrame) -> list[str]:
    """The summary metrics with a value in ``rows`` (leaderboard rows), in board order."""
    return [c[:-5] for c in rows.columns
            if c.endswith("_mean") and c != "wall_time_s_mean" and rows[c].notna().any()]


def headline(rows: pd.DataFrame, metric: str, short: bool = False) -> list[str]:
    """The :data:`HEADLINE` columns of the session metric ``metric`` (mAP or acc) that
    ``rows`` have; ``short``: the first :data:`SHORT` of them and forgetting."""
    present = metrics(rows)
    names = list(HEADLINE[metric])
    names = names[:SHORT] + ["forgetting"] if short else names
    return [m for m in names if m in present]


def delta_columns(metric: str) -> list[str]:
    """The metrics whose paired difference to the baseline sits beside a leaderboard: the
    first two of :data:`HEADLINE` (average and last of ``metric``, mAP or acc)."""
    return list(HEADLINE[metric])[:2]


def label(metric: str) -> str:
    """A metric's name for readers: its :data:`HEADLINE` name, else its key with spaces."""
    names = {k: v for columns in HEADLINE.values() for k, v in columns.items()}
    return names.get(metric, metric.replace("_", " "))


def best(means: pd.Series, metric: str, digits: int = 2) -> pd.Series:
    """True for the rows whose mean, rounded to ``digits`` as displayed, is the best of the
    column (the highest, or the lowest for :data:`LOWER_IS_BETTER`); ties are all best, and
    none is when no row is worse (a single row, or all equal)."""
    shown = pd.to_numeric(means, errors="coerce").round(digits)
    top = shown.min() if metric in LOWER_IS_BETTER else shown.max()
    top = shown == top
    return top if (shown.notna() & ~top).any() else top & False


def decimals(half: float) -> int:
    """Decimals that show an interval half-width with one significant digit (two when it
    starts with 1), at most 3; 1 without an interval."""
    if pd.isna(half) or half <= 0:
        return 1
    exponent = math.floor(math.log10(half))
    leading_one = int(half / 10 ** exponent) == 1
    return min(max(-exponent + leading_one, 0), 3)


def mean_ci(mean: float, half: float, sign: bool = False, pm: str = "±"):
    """``mean ± half``, both rounded to what the interval supports (:func:`decimals`; ``+``
    before a positive mean with ``sign``; the mean alone where ``half`` is NaN, as with one
    seed), or None where ``mean`` is NaN."""
    if pd.isna(mean):
        return None
    places = decimals(half)
    return (f"{mean:{'+' if sign else ''}.{places}f}"
            + ("" if pd.isna(half) else f" {pm} {half:.{places}f}"))


def short_config(config: str) -> str:
    """A config label with its long numbers at 3 significant digits (tuned values)."""
    return re.sub(r"(?<==)-?\d+\.\d{4,}(?:e-?\d+)?",
                  lambda m: f"{float(m.group()):.3g}", config or "")


def deltas(rows: pd.DataFrame, pairs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """For each of ``rows`` (leaderboard rows, index kept) its paired difference to the
    baseline on ``metric``: ``diff_mean``, ``diff_ci95``, ``significant`` and ``n_pairs``
    (NaN where the row has no pair: the baseline itself, or no shared seed)."""
    columns = ["diff_mean", "diff_ci95", "significant", "n_pairs"]
    if pairs is None or pairs.empty:
        return pd.DataFrame(float("nan"), index=rows.index, columns=columns)
    mine = pairs[pairs["metric"] == metric].drop_duplicates(ROW)[ROW + columns]
    merged = rows[ROW].merge(mine, on=ROW, how="left")
    merged.index = rows.index
    return merged[columns]


def baseline(pairs: pd.DataFrame):
    """The baseline the paired differences were taken to, or None when there are none."""
    return pairs["baseline"].iloc[0] if pairs is not None and len(pairs) else None
