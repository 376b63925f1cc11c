"""summary.md's text and figures: which method wins across streams, by how much, with what
confidence (docs/aggregates.md says how to read them).

An *entry* is a method with its tuning (``replay [valid budget 16]``, followed by
``(head_init=kaiming)`` when so) or, untuned, its config (``replay (epochs=2)``); only the
entries present on every stream are compared.

1. Per stream, each run's headline (average mAP or accuracy over sessions) as a normalised
   score ``(x - finetune) / (joint - finetune)``, finetune and joint being the stream's mean
   over seeds of those methods (0: no better than finetuning, 1: as good as joint training).
   Without finetune and joint on every stream (or where joint does not beat finetune) the raw
   scores stand, and the text says so.
2. Across streams and seeds: each entry's interquartile mean (IQM) with its 95%
   stratified-bootstrap interval, and the probability that each entry improves on each other,
   with intervals, and the pairs whose interval contains 0.5 (not separated)
   (benchmarks/stats.py; figures ``plots/summary_iqm.png`` and
   ``plots/summary_improvement.png``).
3. Ranks of the mean headline per stream, the Friedman test (asymptotic and permutation
   p-values) and the Nemenyi critical difference with its diagram
   (``plots/summary_ranks.png``) only when it can separate a pair (CD < k - 1).
4. When the folder holds entries with ``head_init=kaiming`` and the same entries without it:
   Kendall's tau between the two rankings, with its bootstrap interval over streams.
5. When the streams hold both label modes: 1-3 again on each mode's streams on their own,
   with every entry that ran on all of them, so that methods of one label mode are ranked
   too (figures ``plots/summary_iqm_multi.png`` and so on).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from benchmarks.plots import plot_improvement, plot_iqm, plot_ranks
from benchmarks.stats import (RESAMPLES, critical_difference, critical_difference_separates,
                              friedman, friedman_permutation, improvement_matrix, iqm_interval,
                              mean_ranks, rank_correlation)

REFERENCES = ("finetune", "joint")  # the normalised score's 0 and 1
SENSITIVE = "head_init=kaiming"  # the recipe change whose effect on the ranking is reported


def entry_name(method: str, tuning: str, config: str) -> str:
    """``method [tuning]`` when tuned (with `` (head_init=kaiming)`` when ``config`` has it),
    else ``method (config)`` (``method`` alone without overrides)."""
    if tuning and tuning != "defaults":
        return f"{method} [{tuning}]" + (f" ({SENSITIVE})" if SENSITIVE in config.split(", ")
                                         else "")
    return method + (f" ({config})" if config else "")


def run_table(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` (one done cell per row: stream, method, tuning, config, seed, value) with its
    ``entry``, one row per (stream, entry, seed)."""
    runs = runs.assign(entry=[entry_name(m, t, c) for m, t, c in
                              zip(runs["method"], runs["tuning"], runs["config"])])
    return runs.drop_duplicates(["stream", "entry", "seed"])


def reference(entries: pd.Series, method: str) -> Optional[str]:
    """The entry ``method`` normalises with: ``method`` itself (no overrides), else its only
    entry, or its only one with the default head beside a ``head_init=kaiming`` one; None
    without one (``entries`` maps entry -> method)."""
    mine = entries.index[entries == method].tolist()
    default_head = [e for e in mine if not e.endswith(f"({SENSITIVE})")]
    choices = default_head or mine
    return method if method in mine else choices[0] if len(choices) == 1 else None


def normalise(scores: pd.DataFrame, runs: pd.DataFrame,
              methods: pd.Series) -> tuple[pd.DataFrame, str, str]:
    """``runs`` with ``value`` normalised per stream by finetune and joint (see the module's
    docstring); and a sentence saying which scale the values are on, and its unit."""
    low, high = (reference(methods, name) for name in REFERENCES)
    if low is None or high is None:
        return runs, (f"Raw headline scores (%): {REFERENCES[0]} and {REFERENCES[1]} are not "
                      "both on every stream, so no normalised score; the aggregates weight "
                      "each stream by its scale."), "%"
    span = scores[high] - scores[low]
    if (span <= 0).any():
        return runs, (f"Raw headline scores (%): {high} does not beat {low} on "
                      f"{', '.join(span.index[span <= 0])}, so no normalised score."), "%"
    runs = runs.assign(value=(runs["value"] - runs["stream"].map(scores[low]))
                       / runs["stream"].map(span))
    return runs, (f"Normalised score per stream: (x - {low}) / ({high} - {low}), x a run's "
                  f"headline and {low}, {high} their means over seeds on that stream (0: "
                  f"{low}, 1: {high})."), ""


def strata(runs: pd.DataFrame, entry: str, streams) -> list[np.ndarray]:
    """``entry``'s runs on each of ``streams``."""
    mine = runs[runs["entry"] == entry]
    return [mine.loc[mine["stream"] == s, "value"].to_numpy(dtype=float) for s in streams]


def _interval(low: float, high: float, digits: int) -> str:
    return "–" if np.isnan(low) else f"[{low:.{digits}f}, {high:.{digits}f}]"


def stream_table(every: pd.DataFrame) -> pd.DataFrame:
    """Streams x entries: each entry's mean headline over its seeds (NaN where it did not
    run), from a :func:`run_table`."""
    return every.groupby(["stream", "entry"])["value"].mean().unstack()


def summary(runs: pd.DataFrame, folder: Path, modes: Optional[dict] = None) -> str:
    """summary.md's text (and its figures, into ``folder``): ``runs`` one done cell per row
    (stream, method, tuning, config, hparams_config, train_config, seed, value: its
    headline); the entries on every stream are compared, the others named. ``modes`` maps
    each stream to its label mode: with two modes, each mode's streams are compared again on
    their own (5.)."""
    lines = ["# Which method wins overall", ""]
    every = run_table(runs)  # the sensitivity also reads entries run on some streams only
    means = stream_table(every)
    scores = means.dropna(axis=1)
    if scores.empty or scores.shape[1] < 2:
        return "\n".join(lines + ["Fewer than two methods ran on every stream: nothing to "
                                  "rank.", ""])
    lines += _comparison(scores, every, folder)
    left_out = sorted(set(means.columns) - set(scores.columns))
    if left_out:
        lines += ["", "Not compared (missing on some stream): " + ", ".join(left_out) + "."]
    lines += _sensitivity_section(every)
    lines += _mode_sections(every, modes or {}, folder)
    return "\n".join(lines) + "\n"


def _comparison(scores, every, folder, tag: str = "", level: int = 2) -> list[str]:
    """IQM, probability of improvement and ranks of the entries of ``scores`` on its streams,
    under headings of ``level``; figures ``summary_<kind><tag>.png``."""
    runs = every[every["entry"].isin(scores.columns) & every["stream"].isin(scores.index)]
    methods = runs.drop_duplicates("entry").set_index("entry")["method"]
    normalised, scale, unit = normalise(scores, runs, methods)
    iqm, order = _iqm_section(normalised, scores, scale, unit, folder, tag, level)
    return (iqm + _improvement_section(normalised, scores, order, folder, tag, level)
            + _rank_section(scores, folder, tag, level))


def _mode_sections(every, modes: dict, folder) -> list[str]:
    """With streams of two label modes (``multi``, ``single``): per mode with two streams or
    more, the comparison of every entry that ran on all of that mode's streams (methods of
    one label mode are ranked there)."""
    kinds, lines = sorted(set(modes.values())), []
    for mode in kinds if len(kinds) > 1 else []:
        mine = every[every["stream"].map(modes) == mode]
        scores = stream_table(mine).dropna(axis=1)
        if scores.shape[0] < 2 or scores.shape[1] < 2:
            continue
        lines += ["", f"## The {mode}-label streams on their own", "",
                  f"The {len(scores.index)} {mode}-label streams, with every method that ran "
                  f"on all of them ({len(scores.columns)}), those of one label mode included.",
                  ""]
        lines += _comparison(scores, mine, folder, f"_{mode}", 3)
    return lines


def _iqm_section(runs, scores, scale, unit, folder, tag="",
                 level=2) -> tuple[list[str], list[str]]:
    """The IQM table's lines and figure; and the entries, best IQM first."""
    streams = scores.index
    table = pd.DataFrame({entry: iqm_interval(strata(runs, entry, streams))
                          for entry in scores.columns}).T.sort_values("iqm", ascending=False)
    digits = 1 if unit else 3
    lines = ["#" * level + " Interquartile mean across streams and seeds", "",
             "| method | IQM | 95% interval | streams | runs |", "|---|---|---|---|---|"]
    for entry, row in table.iterrows():
        lines.append(f"| {entry} | {row['iqm']:.{digits}f} | "
                     f"{_interval(row['low'], row['high'], digits)} | "
                     f"{int(row['n_streams'])} | {int(row['n_runs'])} |")
    lines += ["", scale + " IQM: the mean of the middle half of all runs of all streams; "
              f"interval: 95% stratified bootstrap (each stream's runs resampled on their own, "
              f"{RESAMPLES} times; none when a stream has one run). It covers seed-to-seed "
              "variation on these streams, not the choice of streams "
              f"(plots/summary_iqm{tag}.png)."]
    plot_iqm(table, folder / f"summary_iqm{tag}.png",
             "normalised score" if not unit else "headline (%)",
             f"IQM over {len(streams)} streams (bars: 95% stratified bootstrap)")
    return lines, table.index.tolist()


def _improvement_section(runs, scores, order, folder, tag="", level=2) -> list[str]:
    """The probability-of-improvement matrix (entries in ``order``) and its heatmap."""
    matrix = improvement_matrix({e: strata(runs, e, scores.index) for e in order})
    lines = ["", "#" * level + " Probability of improvement", "",
             "| P(row > column) | " + " | ".join(order) + " |",
             "|---|" + "---|" * len(order)]
    for x in order:
        lines.append(f"| {x} | " + " | ".join(
            "–" if x == y else f"{matrix['p'].loc[x, y]:.2f} "
            f"{_interval(matrix['low'].loc[x, y], matrix['high'].loc[x, y], 2)}"
            for y in order) + " |")
    lines += ["", "P(X > Y): the probability that a run of X scores higher than a run of Y on "
              "the same stream, ties counted half, averaged over streams, with its 95% "
              "stratified-bootstrap interval; 0.5 is a coin toss, and an interval above 0.5 "
              f"says X improves on Y (plots/summary_improvement{tag}.png).", "",
              _separation(matrix, order)]
    plot_improvement(matrix["p"], folder / f"summary_improvement{tag}.png",
                     f"P(row > column) over {len(scores.index)} streams")
    return lines


def _separation(matrix: dict, order: list) -> str:
    """Which pairs the suite separates: those whose P(X > Y) interval excludes 0.5."""
    pairs = [(x, y) for i, x in enumerate(order) for y in order[i + 1:]]
    tied = [(x, y) for x, y in pairs
            if matrix["low"].loc[x, y] <= 0.5 <= matrix["high"].loc[x, y]]
    if not tied:
        return f"Separated: all {len(pairs)} pairs (no interval contains 0.5)."
    return (f"Separated: {len(pairs) - len(tied)} of {len(pairs)} pairs; not separated "
            "(the interval contains 0.5): " + "; ".join(
                f"{x} vs {y} {matrix['p'].loc[x, y]:.2f} "
                f"{_interval(matrix['low'].loc[x, y], matrix['high'].loc[x, y], 2)}"
                for x, y in tied) + ".")


def _rank_section(scores, folder, tag="", level=2) -> list[str]:
    ranks, test = mean_ranks(scores), friedman(scores)
    per_stream = scores.rank(axis=1, ascending=False, method="average")
    lines = ["", "#" * level + " Ranks over streams", "",
             "| method | mean rank | " + " | ".join(scores.index) + " |",
             "|---|---|" + "---|" * len(scores.index)]
    for entry, rank in ranks.items():
        lines.append(f"| {entry} | {rank:.2f} | "
                     + " | ".join(f"{per_stream.loc[s, entry]:g} ({scores.loc[s, entry]:.1f})"
                                  for s in scores.index) + " |")
    lines += ["", f"Ranks by the mean headline metric (average mAP or accuracy over "
                  f"sessions) on each of the {test['n']} streams; rank 1 is best, ties share "
                  "the average; in brackets the value ranked."]
    if test["n"] < 2:
        return lines + ["", "One stream: no test across streams."]
    exact = friedman_permutation(scores)
    how = (f"exact, over all {exact['permutations']}" if exact["exact"] else
           f"Monte Carlo, {exact['permutations']} random")
    lines += ["", f"Friedman test (Demsar 2006): chi2_F = {test['chi2']:.2f}, permutation p = "
                  f"{exact['p']:.3g} ({how} within-stream orderings); asymptotic p = "
                  f"{test['p_chi2']:.3g} (chi-square), Iman-Davenport F_F = {test['F']:.2f} "
                  f"(p = {test['p_F']:.3g}); the asymptotic p-values need many streams, the "
                  "permutation p does not."]
    k, n = test["k"], test["n"]
    cd = critical_difference(k, n)
    if critical_difference_separates(k, n):
        lines += ["", f"Nemenyi critical difference at 0.05: {cd:.2f} mean ranks: two "
                      "methods whose mean ranks differ by less are not distinguished "
                      f"(plots/summary_ranks{tag}.png)."]
        plot_ranks(ranks, cd, folder / f"summary_ranks{tag}.png",
                   f"mean rank over {n} streams (bar: Nemenyi CD at 0.05)")
    else:
        lines += ["", f"No Nemenyi diagram: with {k} methods on {n} streams the critical "
                      f"difference is {cd:.2f} mean ranks, not less than {k - 1}, the widest "
                      "gap mean ranks can have, so no pair could be told apart whatever the "
                      "scores; more streams are needed."]
    return lines


def _without_sensitive(row) -> str:
    train = ", ".join(item for item in row["train_config"].split(", ")
                      if item and item != SENSITIVE)
    return ", ".join(filter(None, [row["hparams_config"], train]))


def _sensitivity_section(runs: pd.DataFrame) -> list[str]:
    """Kendall's tau between the ranking of the entries with ``head_init=kaiming`` and of the
    same entries without it, on the streams both have (nothing when fewer than 2 match)."""
    kaiming = runs["train_config"].str.split(", ").map(lambda items: SENSITIVE in items)
    if not kaiming.any() or kaiming.all():
        return []
    base = runs.assign(entry=[entry_name(m, t, _without_sensitive(r)) for (_, r), m, t in
                              zip(runs.iterrows(), runs["method"], runs["tuning"])])

    def means(rows):
        return rows.groupby(["stream", "entry"])["value"].mean().unstack().dropna(axis=1)

    linear, changed = means(base[~kaiming]), means(base[kaiming])
    common = linear.columns.intersection(changed.columns)
    if len(common) < 2:
        return []
    tau = rank_correlation(linear, changed)
    return ["", "## Sensitivity to the head initialisation", "",
            f"Kendall's tau between the rankings of {len(common)} methods ({', '.join(common)}) "
            f"with the default head and with {SENSITIVE}, over {tau['n_streams']} streams: "
            f"{tau['tau']:.2f} {_interval(tau['low'], tau['high'], 2)} (95% bootstrap over "
            f"streams; p = {tau['p']:.3g} against unrelated rankings). 1: the same order, 0: "
            "unrelated, -1: reversed."]
