"""Statistics over seeds: confidence intervals and paired differences between methods; over
streams: mean ranks, the Friedman test (asymptotic and permutation p-values) and the Nemenyi
critical difference; across streams and seeds: the interquartile mean and the probability of
improvement with stratified-bootstrap intervals (Agarwal et al., "Deep reinforcement learning
at the edge of the statistical precipice", NeurIPS 2021, the estimators of its ``rliable``
library, computed with scipy: rliable 1.2 needs ``arch < 8``, and arch 7.2 fails to import
with pandas 3.1); and the rank correlation of two rankings of methods.

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


def critical_difference_separates(k: int, n: int, alpha: float = 0.05) -> bool:
    """Whether the Nemenyi critical difference for ``k`` methods over ``n`` streams is below
    ``k - 1``, the widest gap two mean ranks can have; when it is not, no pair can be told
    apart whatever the scores (k = 8, n = 2: CD = 7.42 > 7)."""
    return critical_difference(k, n, alpha) < k - 1


def critical_difference(k: int, n: int, alpha: float = 0.05) -> float:
    """The Nemenyi test's critical difference of mean ranks (Demsar 2006, Sec. 3.2.2):
    ``q_alpha * sqrt(k(k+1) / (6N))``, q_alpha the studentized range quantile / sqrt(2)."""
    q = scipy_stats.studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2)
    return float(q * math.sqrt(k * (k + 1) / (6 * n)))


# Stratified bootstrap: resamples (rliable's default is 50 000; 10 000 keep the report fast and
# the 2.5% and 97.5% percentiles within about 0.1 standard errors of their limit).
RESAMPLES = 10_000
PERMUTATIONS = 9_999  # Monte Carlo draws of the Friedman permutation test when not exact


def iqm(values) -> float:
    """The interquartile mean: the mean of the middle half of all values (rliable's
    ``aggregate_iqm``: ``scipy.stats.trim_mean(values, 0.25)`` over the flattened array,
    ``int(0.25 n)`` values cut at each end)."""
    return float(scipy_stats.trim_mean(np.ravel(values), 0.25))


def _pooled_iqm(*strata, axis=-1):
    return scipy_stats.trim_mean(np.concatenate(strata, axis=axis), 0.25, axis=axis)


def stratified_interval(statistic, strata: list, seed: int = 0,
                        confidence: float = 0.95) -> tuple[float, float]:
    """Percentile interval of ``statistic(*strata, axis=-1)`` under the stratified bootstrap
    (rliable's ``StratifiedBootstrap``): each stratum (one stream's runs of one method) is
    resampled with replacement on its own, by ``scipy.stats.bootstrap`` with one sample per
    stratum. NaNs when some stratum has fewer than 2 runs (nothing to resample)."""
    strata = [np.asarray(s, dtype=float) for s in strata]
    if not strata or min(len(s) for s in strata) < 2:
        return math.nan, math.nan
    result = scipy_stats.bootstrap(strata, statistic, n_resamples=RESAMPLES, vectorized=True,
                                   axis=-1, method="percentile", confidence_level=confidence,
                                   rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def iqm_interval(strata: list, seed: int = 0) -> dict:
    """IQM of all runs of one method (``strata``: one array of runs per stream) with its 95%
    stratified-bootstrap interval."""
    low, high = stratified_interval(_pooled_iqm, strata, seed)
    return {"iqm": iqm(np.concatenate([np.ravel(s) for s in strata])), "low": low,
            "high": high, "n_streams": len(strata), "n_runs": sum(len(s) for s in strata)}


def _improvement(*strata, axis=-1):
    """Mean over streams of P(x > y) (ties half): the first half of ``strata`` are x's runs per
    stream, the second half y's; per stream the Mann-Whitney U of x over y / (n_x n_y)."""
    n = len(strata) // 2
    return np.mean([scipy_stats.mannwhitneyu(x, y, axis=axis, method="asymptotic").statistic
                    / (x.shape[axis] * y.shape[axis])
                    for x, y in zip(strata[:n], strata[n:])], axis=0)


def probability_of_improvement(x_strata: list, y_strata: list, seed: int = 0) -> dict:
    """P(X > Y): the probability that a run of method X scores higher than a run of Y on the
    same stream (ties count half), averaged over streams (rliable's
    ``probability_of_improvement``), with its 95% stratified-bootstrap interval (X's and Y's
    runs of every stream resampled on their own)."""
    strata = [np.asarray(s, dtype=float) for s in (*x_strata, *y_strata)]
    low, high = stratified_interval(_improvement, strata, seed)
    return {"p": float(_improvement(*strata)), "low": low, "high": high}


def improvement_matrix(runs: dict, seed: int = 0) -> dict[str, pd.DataFrame]:
    """P(row > column) for every pair of methods: ``p``, ``low`` and ``high`` (its interval),
    methods x methods tables with a NaN diagonal; ``runs`` maps a method to its runs per
    stream (same streams, same order). P(Y > X) = 1 - P(X > Y) (Mann-Whitney: U_xy + U_yx =
    n_x n_y), so each pair is computed once."""
    names = list(runs)
    tables = {key: pd.DataFrame(np.nan, index=names, columns=names)
              for key in ("p", "low", "high")}
    for i, x in enumerate(names):
        for y in names[i + 1:]:
            est = probability_of_improvement(runs[x], runs[y], seed)
            for key, mirror in (("p", "p"), ("low", "high"), ("high", "low")):
                tables[key].loc[x, y] = est[key]
                tables[key].loc[y, x] = 1 - est[mirror]
    return tables


def _friedman_chi2(*columns, axis=-1):
    """Demsar's chi2_F of the table whose k columns (methods) are ``columns``, each holding
    the N streams' scores along ``axis``; batched over leading axes."""
    table = np.stack([np.moveaxis(c, axis, -1) for c in columns], axis=-2)  # (..., k, N)
    k, n = table.shape[-2:]
    ranks = scipy_stats.rankdata(-table, axis=-2).mean(axis=-1)  # (..., k)
    return 12 * n / (k * (k + 1)) * ((ranks ** 2).sum(axis=-1) - k * (k + 1) ** 2 / 4)


def friedman_permutation(scores: pd.DataFrame, seed: int = 0) -> dict:
    """The Friedman test's p-value by permutation, valid for any number of streams: under the
    null hypothesis every ordering of the k methods' scores within a stream is equally
    likely, so chi2_F is compared with its values over within-stream permutations
    (``scipy.stats.permutation_test``, ``permutation_type="samples"``): all (k!)^N of them
    when there are at most PERMUTATIONS, else PERMUTATIONS random ones (``exact`` False)."""
    n, k = scores.shape
    if n < 2 or k < 2:
        return {"chi2": math.nan, "p": math.nan, "exact": False, "permutations": 0}
    total = math.factorial(k) ** n
    columns = [scores[c].to_numpy(dtype=float) for c in scores.columns]
    result = scipy_stats.permutation_test(columns, _friedman_chi2, permutation_type="samples",
                                          vectorized=True, n_resamples=PERMUTATIONS,
                                          alternative="greater",
                                          rng=np.random.default_rng(seed))
    return {"chi2": float(result.statistic), "p": float(result.pvalue),
            "exact": total <= PERMUTATIONS, "permutations": min(total, PERMUTATIONS)}


def rank_correlation(scores_a: pd.DataFrame, scores_b: pd.DataFrame, seed: int = 0) -> dict:
    """Kendall's tau-b between two rankings of the same methods (e.g. the same grid with two
    head initialisations): each ranking is the methods' mean rank over the streams
    (:func:`mean_ranks`) of a streams x methods table; only the streams and methods both
    tables hold count. The 95% interval is a percentile bootstrap over streams (the same
    resampled streams for both tables, ``scipy.stats.bootstrap``); NaN below 2 streams.
    ``p`` is scipy's test of tau = 0 over the k methods."""
    streams = scores_a.index.intersection(scores_b.index)
    methods = scores_a.columns.intersection(scores_b.columns)
    a = scores_a.loc[streams, methods].to_numpy(dtype=float)
    b = scores_b.loc[streams, methods].to_numpy(dtype=float)

    def ranking(table):  # mean rank of each method (column), rank 1 the highest score
        return scipy_stats.rankdata(-table, axis=1).mean(axis=0)

    def tau(rows):
        rows = rows.astype(int)
        return scipy_stats.kendalltau(ranking(a[rows]), ranking(b[rows])).statistic

    whole = scipy_stats.kendalltau(ranking(a), ranking(b))
    low = high = math.nan
    if len(streams) >= 2 and len(methods) >= 2:
        result = scipy_stats.bootstrap((np.arange(len(streams)),), tau, vectorized=False,
                                       n_resamples=RESAMPLES // 5, method="percentile",
                                       rng=np.random.default_rng(seed))
        low, high = result.confidence_interval.low, result.confidence_interval.high
    return {"tau": float(whole.statistic), "p": float(whole.pvalue), "low": float(low),
            "high": float(high), "n_streams": len(streams), "methods": list(methods)}
