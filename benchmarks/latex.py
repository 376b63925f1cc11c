"""``leaderboard.tex``: the leaderboard as LaTeX tables for a paper, one booktabs table per
stream with the headline columns (see :func:`benchmarks.tables.headline`).

Each cell is "mean ± half-width of the 95% Student-t interval over seeds" (the mean alone
with one seed); the best value of each metric column, as displayed, is bold (the lowest for
forgetting); the Δ columns hold the paired difference to the baseline of the average and
last session metric with its interval, ``*`` when the interval excludes 0; ``†`` marks a
row with results from other code. The file is a whole document that compiles with plain
``pdflatex`` (geometry and booktabs); a paper copies a ``table`` environment and adds
``\\usepackage{booktabs}`` to its preamble.
"""
from __future__ import annotations

import pandas as pd

from benchmarks import tables
from benchmarks.plots import slug

PREAMBLE = r"""% leaderboard.tex: written by python -m benchmarks.report from this folder's records.
% Compiles alone with pdflatex; to use a table, copy its table environment into the paper
% and add \usepackage{booktabs} to the paper's preamble.
\documentclass{article}
\usepackage[margin=2cm]{geometry}
\usepackage{booktabs}
\begin{document}
"""
SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
           "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
           "^": r"\textasciicircum{}"}


def escape(text) -> str:
    """``text`` with LaTeX's special characters escaped."""
    return "".join(SPECIAL.get(char, char) for char in str(text))


def latex(board: pd.DataFrame, pairs: pd.DataFrame, session_metric: dict) -> str:
    """The document: one table per stream of ``board`` (leaderboard rows), Δ columns from
    ``pairs`` (paired.csv's rows); ``session_metric`` maps a label mode to its metric."""
    parts = [PREAMBLE]
    if board.empty:
        parts.append("No finished cells yet.\n")
    for stream, rows in board.groupby("stream", sort=False):
        parts.append(_table(stream, rows, pairs, session_metric[rows["label_mode"].iloc[0]]))
    parts.append("\\end{document}\n")
    return "\n".join(parts)


def _table(stream: str, rows: pd.DataFrame, pairs: pd.DataFrame, metric: str) -> str:
    columns = tables.headline(rows, metric, short=True)
    baseline = tables.baseline(pairs)
    differences = tables.delta_columns(metric) if baseline else []
    with_config = rows["config"].astype(bool).any()
    header = ["method", *(["config"] if with_config else []), "seeds",
              *(_name(m) for m in columns), *(f"$\\Delta$ {_name(m)}" for m in differences)]
    bold = {m: tables.best(rows[f"{m}_mean"], m) for m in columns}
    delta = {m: tables.deltas(rows, pairs, m) for m in differences}
    lines = []
    for index, row in rows.iterrows():
        cells = [escape(row["method"]) + ("$^{\\dagger}$" if row["stale"] else ""),
                 *([escape(tables.short_config(row["config"]))] if with_config else []),
                 str(row["n_seeds"]),
                 *(_mean_ci(row[f"{m}_mean"], row[f"{m}_ci95"], bold[m][index])
                   for m in columns),
                 *(_difference(delta[m].loc[index]) for m in differences)]
        lines.append(" & ".join(cells) + r" \\")
    caption = (f"\\texttt{{{escape(stream)}}} ({rows['label_mode'].iloc[0]}-label): mean "
               "$\\pm$ half-width of the 95\\% Student-t interval over seeds; bold: the best "
               "of each column"
               + (f"; $\\Delta$: paired difference to {escape(baseline)} over the seeds "
                  "both have, $^{*}$: its interval excludes 0" if differences else "")
               + ("; $^{\\dagger}$: results from other code" if rows["stale"].any() else "")
               + ".")
    align = "l" * (2 if with_config else 1) + "r" * (len(header) - (2 if with_config else 1))
    return "\n".join([
        r"\begin{table}[ht]", r"\centering", r"\footnotesize", r"\setlength{\tabcolsep}{4pt}",
        f"\\caption{{{caption}}}",
        f"\\label{{tab:{slug(stream)}}}", f"\\begin{{tabular}}{{{align}}}", r"\toprule",
        " & ".join(header) + r" \\", r"\midrule", *lines, r"\bottomrule", r"\end{tabular}",
        r"\end{table}", ""])


def _name(metric: str) -> str:
    return escape(tables.label(metric))


def _mean_ci(mean: float, half: float, bold: bool) -> str:
    text = tables.mean_ci(mean, half, pm=r"\pm")
    if text is None:
        return "--"
    return f"{{\\boldmath${text}$}}" if bold else f"${text}$"


def _difference(pair: pd.Series) -> str:
    text = tables.mean_ci(pair["diff_mean"], pair["diff_ci95"], sign=True, pm=r"\pm")
    if text is None:
        return "--"
    return f"${text}" + ("^{*}" if pair["significant"] else "") + "$"
