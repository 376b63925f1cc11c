"""Statistics over seeds: confidence intervals and paired differences between methods; and
over streams: mean ranks, the Friedman test and the Nemenyi critical difference.

Intervals are two-sided 95% Student-t intervals over seeds: ``mean ± t(0.975, n-1) * s /
sqrt(n)`` with ``s`` the sample standard deviation of the n seeds. A paired difference
compares two methods on the seeds they share (same stream, training config and thread
count): the interval is the t interval of the per-seed differences, so seed-to-seed
variation common to both methods cancels. With fewer than 2 values there is no interval
(NaN, never 0).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats


def ci95(values) -> float:
    """Half-width of the 95% Student-t interval of the mean of ``values`` (NaN below 2)."""
    values = pd.to_numeric(pd.Series(values), errors="coerce").dropna()
    n = len(values)
    if n < 2:
        return float("nan")
    return float(scipy_stats.t.ppf(0.975, n - 1) * values.std() / math.sqrt(n))


def paired_differences(seeds: pd.DataFrame, base: pd.Series, baseline: str,
                       metrics: list[str], keys: list[str]) -> pd.DataFrame:
    """Per (stream, method, config, ...) row and metric: mean and 95% interval of the per-seed
    difference ``row - baseline`` over the seeds both have.

    ``seeds`` holds one done cell per row with ``method``, ``config``, ``seed``, the columns
    ``keys`` that must match between a row and its baseline (e.g. stream, training config,
    threads) and the ``metrics``; ``base`` is a mask of the baseline's cells among them,
    ``baseline`` its name in the output.
    """
    base = seeds[base]
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


def mean_ranks(scores: pd.DataFrame) -> pd.Series:
    """Each column's (method's) mean rank over the rows (streams); rank 1 is the highest
    score of a row, ties share the average rank."""
    return scores.rank(axis=1, ascending=False, method="average").mean().sort_values()


def friedman(scores: pd.DataFrame) -> dict:
    """The Friedman test of Demsar (2006, Eq. 1-2) over N rows (streams) and k columns
    (methods): ``chi2 = 12N / (k(k+1)) * (sum R_j^2 - k(k+1)^2 / 4)`` with R_j the mean
    ranks (chi-square, k-1 degrees of freedom), and Iman and Davenport's
    ``F = (N-1) chi2 / (N(k-1) - chi2)`` (F with k-1 and (k-1)(N-1) degrees of freedom), the
    one Demsar recommends. NaN where N < 2 or k < 2."""
    n, k = scores.shape
    ranks = mean_ranks(scores)
    if n < 2 or k < 2:
        return {"n": n, "k": k, "chi2": math.nan, "p_chi2": math.nan, "F": math.nan,
                "p_F": math.nan}
    chi2 = 12 * n / (k * (k + 1)) * (float((ranks ** 2).sum()) - k * (k + 1) ** 2 / 4)
    denominator = n * (k - 1) - chi2
    f = (n - 1) * chi2 / denominator if denominator > 0 else math.inf
    return {"n": n, "k": k, "chi2": chi2, "p_chi2": float(scipy_stats.chi2.sf(chi2, k - 1)),
            "F": f, "p_F": float(scipy_stats.f.sf(f, k - 1, (k - 1) * (n - 1)))
            if math.isfinite(f) else 0.0}


def critical_difference(k: int, n: int, alpha: float = 0.05) -> float:
    """The Nemenyi test's critical difference of mean ranks (Demsar 2006, Sec. 3.2.2):
    ``q_alpha * sqrt(k(k+1) / (6N))``, q_alpha the studentized range quantile / sqrt(2)."""
    q = scipy_stats.studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2)
    return float(q * math.sqrt(k * (k + 1) / (6 * n)))
