"""The report's figures, one set per stream, for any number of methods (up to ~10 stay
readable: distinct colours and markers, legends beside the axes so they hide no data).

- ``<stream>_sessions.png``: the headline metric after each session (mean over seeds, band:
  95% Student-t interval over seeds);
- ``<stream>_last.png``: last-session headline, and its old- / new-class split;
- ``<stream>_groups.png``: last-session headline by training frequency (head / medium /
  tail thirds of the classes);
- ``<stream>_per_class.png``: each class's final AP or accuracy against its training
  count (log scale), mean over seeds: the imbalance effect at a glance.

Error bars are 95% Student-t intervals over seeds (none with a single seed).

Across streams (summary.md): ``summary_iqm.png``, each method's interquartile mean with its
stratified-bootstrap interval; ``summary_improvement.png``, the probability-of-improvement
matrix as a heatmap; ``summary_ranks.png``, the critical-difference diagram.
"""
from __future__ import annotations

import re
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from benchmarks.stats import ci95  # noqa: E402

MARKERS = "osD^vP*Xhp"
MAX_NAMED_CLASSES = 30  # the per-class plot names its classes up to this many
UNITS = {"mAP": "mAP (%)", "acc": "accuracy (%)"}


def slug(stream: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", stream).strip("_")


def plot_stream(stream: str, metric: str, rows: pd.DataFrame, table: pd.DataFrame,
                per_class: pd.DataFrame, folder: Path, baseline: str = None) -> list[Path]:
    """Every figure of one stream: ``rows`` its leaderboard rows, ``table`` its per-session
    metrics, ``per_class`` its final per-class values with training counts and names;
    the rows of ``baseline`` (with no hyperparameter override) are marked in the legends."""
    labels = [_label(row, baseline) for _, row in rows.iterrows()]
    name = slug(stream)
    paths = [folder / f"{name}_{kind}.png" for kind in ("sessions", "last", "groups",
                                                         "per_class")]
    _sessions(table, rows, labels, metric, paths[0], stream)
    _bars(rows, labels, [f"last_{metric}", f"last_old_{metric}", f"last_new_{metric}"],
          ["all seen classes", "old classes", "new classes"], metric, paths[1],
          f"{stream}: after the last session")
    _bars(rows, labels, [f"last_{g}_{metric}" for g in ("head", "medium", "tail")],
          ["head (most images)", "medium", "tail (fewest)"], metric, paths[2],
          f"{stream}: last session by training frequency")
    _per_class(per_class, rows, labels, metric, paths[3], stream)
    return paths


def plot_ranks(ranks: pd.Series, cd: float, path: Path, title: str) -> Path:
    """A critical-difference diagram (Demsar 2006): methods at their mean rank on a rank
    axis, a bar of the critical difference, and a thick line under each group of methods
    whose mean ranks lie within it of each other."""
    k = len(ranks)
    fig, ax = plt.subplots(figsize=(7.5, 1.2 + 0.3 * k))
    ax.set_xlim(0.5, k + 0.5)
    ax.set_ylim(-k - 1, 1.6)
    ax.invert_xaxis()  # rank 1 on the right, as in Demsar's figures
    for i, (name, rank) in enumerate(ranks.items()):  # the better half labelled on the right
        right = i < (k + 1) // 2
        y = -(i if right else k - 1 - i + (k + 1) // 2) - 1
        edge = 0.5 if right else k + 0.5
        ax.plot([rank, rank, edge], [0, y, y], color="0.3", lw=0.8)
        ax.text(edge - 0.05 if right else edge + 0.05, y, f"{name} ({rank:.2f})",
                ha="left" if right else "right", va="center", fontsize="small")
    ax.plot([1, 1 + cd], [0.9, 0.9], color="black", lw=2)
    ax.text(1 + cd / 2, 1.05, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize="small")
    values = ranks.tolist()
    groups = [(values[i], values[j]) for i in range(k) for j in range(k - 1, i, -1)
              if values[j] - values[i] < cd]
    groups = [g for g in groups if not any(o != g and o[0] <= g[0] and g[1] <= o[1]
                                           for o in groups)]
    for n, (low, high) in enumerate(dict.fromkeys(groups)):
        ax.plot([low, high], [-0.3 - 0.25 * n] * 2, color="black", lw=3)
    ax.set_yticks([])
    ax.spines["top"].set_position(("data", 0))
    ax.xaxis.tick_top()
    ax.set_xticks(range(1, k + 1))
    for side in ("left", "right", "bottom"):
        ax.spines[side].set_visible(False)
    ax.set_title(title, fontsize="small", pad=18)
    _save(fig, path)
    return path


def plot_iqm(table: pd.DataFrame, path: Path, unit: str, title: str) -> Path:
    """Each method's (row's) ``iqm`` as a point with a bar from ``low`` to ``high`` (none when
    NaN), best on top."""
    table = table.iloc[::-1]
    fig, ax = plt.subplots(figsize=(6.5, 1.0 + 0.35 * len(table)))
    ys = np.arange(len(table))
    iqm = table["iqm"].to_numpy(dtype=float)
    low = np.nan_to_num(iqm - table["low"].to_numpy(dtype=float))
    high = np.nan_to_num(table["high"].to_numpy(dtype=float) - iqm)
    ax.errorbar(iqm, ys, xerr=[low, high], fmt="o", color="black", ecolor="0.4", capsize=3)
    ax.set_yticks(ys, [textwrap.fill(str(name), 40) for name in table.index])
    ax.set(xlabel=f"interquartile mean of the {unit}", title=title)
    ax.grid(axis="x", alpha=0.3)
    _save(fig, path)
    return path


def plot_improvement(matrix: pd.DataFrame, path: Path, title: str) -> Path:
    """A heatmap of P(row > column) (0 to 1, 0.5 white), each cell annotated."""
    k = len(matrix)
    fig, ax = plt.subplots(figsize=(2.5 + 0.7 * k, 1.5 + 0.6 * k))
    values = matrix.to_numpy(dtype=float)
    image = ax.imshow(values, cmap="RdBu", vmin=0, vmax=1)
    for (i, j), value in np.ndenumerate(values):
        if not np.isnan(value):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize="small",
                    color="white" if abs(value - 0.5) > 0.35 else "black")
    names = [textwrap.fill(str(name), 20) for name in matrix.index]
    ax.set_xticks(range(k), names, rotation=45, ha="right", fontsize="small")
    ax.set_yticks(range(k), names, fontsize="small")
    ax.set(xlabel="Y", ylabel="X", title=title)
    fig.colorbar(image, ax=ax, label="P(X > Y)", shrink=0.8)
    _save(fig, path)
    return path


def _style(i: int) -> dict:
    return {"color": plt.get_cmap("tab10")(i % 10), "marker": MARKERS[i % len(MARKERS)]}


def _legend(ax, n: int) -> None:
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0),
              ncol=1 if n <= 12 else 2, frameon=False)


def _match(table: pd.DataFrame, row) -> pd.DataFrame:
    same = (table["method"] == row["method"]) & (table["config"] == row["config"])
    threads = table["threads"].isna() if pd.isna(row["threads"]) else \
        table["threads"] == row["threads"]
    return table[same & threads]


def _sessions(table, rows, labels, metric, path, stream) -> None:
    fig, ax = plt.subplots(figsize=(7.5, 4))
    for i, ((_, row), label) in enumerate(zip(rows.iterrows(), labels)):
        curve = _match(table, row).groupby("n_seen")[metric].agg(["mean", ci95])
        ax.plot(curve.index, curve["mean"], label=label, **_style(i))
        ax.fill_between(curve.index, curve["mean"] - curve["ci95"].fillna(0),
                        curve["mean"] + curve["ci95"].fillna(0), alpha=0.15,
                        color=_style(i)["color"])
    ax.set_xticks(sorted(table["n_seen"].dropna().unique()))
    ax.set(xlabel="classes seen", ylabel=UNITS[metric],
           title=f"{stream}: {metric} after each session (band: 95% CI over seeds)")
    ax.grid(alpha=0.3)
    _legend(ax, len(labels))
    _save(fig, path)


def _bars(rows, labels, columns, names, metric, path, title) -> None:
    n = max(1, len(rows))
    fig, ax = plt.subplots(figsize=(4 + 0.5 * len(columns) * n ** 0.8, 4))
    width = 0.8 / n
    for i, ((_, row), label) in enumerate(zip(rows.iterrows(), labels)):
        xs = [j + (i - (n - 1) / 2) * width for j in range(len(columns))]
        errors = [row.get(f"{c}_ci95", np.nan) for c in columns]
        ax.bar(xs, [row.get(f"{c}_mean", np.nan) for c in columns], width,
               yerr=[0 if pd.isna(e) else e for e in errors], capsize=2, label=label,
               color=_style(i)["color"])
    ax.set_xticks(range(len(columns)), names)
    ax.set(ylabel=UNITS[metric], title=title + " (bars: 95% CI over seeds)")
    ax.grid(axis="y", alpha=0.3)
    _legend(ax, n)
    _save(fig, path)


def _per_class(per_class, rows, labels, metric, path, stream) -> None:
    fig, ax = plt.subplots(figsize=(7.5, 4))
    for i, ((_, row), label) in enumerate(zip(rows.iterrows(), labels)):
        points = _match(per_class, row).groupby(["class", "count"])["value"].mean().reset_index()
        ax.plot(points["count"], points["value"], linestyle="none", alpha=0.8, label=label,
                **_style(i))
    ax.set_xscale("log")
    names = per_class.groupby("count")["name"].agg(lambda n: "/".join(sorted(set(map(str, n)))))
    if 0 < len(names) <= MAX_NAMED_CLASSES:  # each count named by its class(es), on top
        top = ax.secondary_xaxis("top")
        top.set_xticks(names.index.tolist(), names.tolist(), rotation=90, fontsize="x-small")
        top.minorticks_off()
    ax.set(xlabel="training images of the class (log scale)",
           ylabel=f"final {UNITS[metric]}",
           title=f"{stream}: each class after the last session (mean over seeds)")
    ax.grid(alpha=0.3)
    _legend(ax, len(labels))
    _save(fig, path)


def _label(row, baseline: str = None) -> str:
    """``method (config)``, ``[baseline]`` after the baseline's row, wrapped so that a long
    config keeps the legend narrow."""
    mark = " [baseline]" if row["method"] == baseline and not row.get("hparams_config") else ""
    return textwrap.fill(row["method"] + (f" ({row['config']})" if row["config"] else "")
                         + mark, 40)


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
