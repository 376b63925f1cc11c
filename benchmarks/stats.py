"""Statistics over seeds: confidence intervals and paired differences between methods.

Intervals are two-sided 95% Student-t intervals over seeds: ``mean ± t(0.975, n-1) * s /
sqrt(n)`` with ``s`` the sample standard deviation of the n seeds. A paired difference
compares two methods on the seeds they share (same stream, training config and thread
count): the interval is the t interval of the per-seed differences, so seed-to-seed
variation common to both methods cancels. With fewer than 2 values there is no interval
(NaN, never 0).
"""
from __future__ import annotations

import math

import pandas as pd
from scipy import stats as scipy_stats


def ci95(values) -> float:
    """Half-width of the 95% Student-t interval of the mean of ``values`` (NaN below 2)."""
    values = pd.to_numeric(pd.Series(values), errors="coerce").dropna()
    n = len(values)
    if n < 2:
        return float("nan")
    return float(scipy_stats.t.ppf(0.975, n - 1) * values.std() / math.sqrt(n))


def paired_differences(seeds: pd.DataFrame, baseline: str, metrics: list[str],
                       keys: list[str]) -> pd.DataFrame:
    """Per (stream, method, config, ...) row and metric: mean and 95% interval of the per-seed
    difference ``method - baseline`` over the seeds both have.

    ``seeds`` holds one done cell per row with ``method``, ``config``, ``seed``, the columns
    ``keys`` that must match between a method and its baseline (e.g. stream, training
    config, threads) and the ``metrics``. The baseline's cells are those of ``baseline``
    with no hyperparameter override (its ``hparams_config`` is empty).
    """
    base = seeds[(seeds["method"] == baseline) & (seeds["hparams_config"] == "")]
    others = seeds[~seeds.index.isin(base.index)]
    rows = []
    for (method, config, *key), cells in others.groupby(["method", "config", *keys],
                                                        sort=False, dropna=False):
        mine = base
        for column, value in zip(keys, key):
            mine = mine[mine[column].isna() if pd.isna(value) else mine[column] == value]
        pairs = cells.merge(mine, on="seed", suffixes=("", "_base"))
        if pairs.empty:
            continue
        for metric in metrics:
            diff = (pd.to_numeric(pairs[metric], errors="coerce")
                    - pd.to_numeric(pairs[f"{metric}_base"], errors="coerce")).dropna()
            if diff.empty:
                continue
            half = ci95(diff)
            rows.append({"method": method, "config": config, **dict(zip(keys, key)),
                         "baseline": baseline, "metric": metric, "n_pairs": len(diff),
                         "diff_mean": diff.mean(), "diff_ci95": half,
                         "significant": bool(half == half and abs(diff.mean()) > half)})
    return pd.DataFrame(rows, columns=["method", "config", *keys, "baseline", "metric",
                                       "n_pairs", "diff_mean", "diff_ci95", "significant"])
