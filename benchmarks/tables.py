"""What the leaderboard's renderings for readers share (report.html, leaderboard.tex): the
headline columns of a stream, which direction of a metric is better, the best rows of a
column, "mean ± interval" as printed, and the paired differences to the baseline aligned
with the leaderboard's rows."""
from __future__ import annotations

import pandas as pd

# Metrics where a lower value is better; every other summary metric is better higher.
LOWER_IS_BETTER = {"forgetting", "last_mem_FPR", "last_mem_FNR", "last_mem_balance",
                   "wall_time_s"}
ROW = ["stream", "method", "config", "threads"]


def metrics(rows: pd.DataFrame) -> list[str]:
    """The summary metrics with a value in ``rows`` (leaderboard rows), in board order."""
    return [c[:-5] for c in rows.columns
            if c.endswith("_mean") and c != "wall_time_s_mean" and rows[c].notna().any()]


def headline(rows: pd.DataFrame, metric: str) -> list[str]:
    """The columns a reader compares first: average and last value of the session metric
    ``metric`` (mAP or acc), its last value on the tail classes, and forgetting, where
    ``rows`` have them."""
    present = metrics(rows)
    return [m for m in (f"avg_{metric}", f"last_{metric}", f"last_tail_{metric}", "forgetting")
            if m in present]


def best(means: pd.Series, metric: str, digits: int = 2) -> pd.Series:
    """True for the rows whose mean, rounded to ``digits`` as displayed, is the best of the
    column (the highest, or the lowest for :data:`LOWER_IS_BETTER`); ties are all best, and
    none is when no row is worse (a single row, or all equal)."""
    shown = pd.to_numeric(means, errors="coerce").round(digits)
    top = shown.min() if metric in LOWER_IS_BETTER else shown.max()
    top = shown == top
    return top if (shown.notna() & ~top).any() else top & False


def mean_ci(mean: float, half: float, sign: bool = False, pm: str = "±"):
    """``mean ± half`` to two decimals (``+`` before a positive mean with ``sign``; the mean
    alone where ``half`` is NaN, as with one seed), or None where ``mean`` is NaN."""
    if pd.isna(mean):
        return None
    return f"{mean:{'+' if sign else ''}.2f}" + ("" if pd.isna(half) else f" {pm} {half:.2f}")


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
