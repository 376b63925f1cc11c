"""Leaderboard and plots from the records of a results folder.

``python -m benchmarks.report DIR`` (re-)renders, from ``DIR/records``:

- ``leaderboard.csv``: one row per (stream, method, config): ``n_seeds``, ``<metric>_mean``
  and ``<metric>_std`` (sample std over seeds) of every summary metric, mean wall time,
  ``code_versions`` (distinct code versions among its records) and ``stale`` (some record
  comes from code other than the current checkout's); sorted by the headline metric (avg_mAP
  or avg_acc) within each stream. ``config`` names the overrides of the row's cells.
  Methods with a memory also get ``last_mem_FPR`` / ``last_mem_FNR``, the false-positive
  and false-negative rates (%) of the memory's labels in the last session against the
  true labels (summary metrics written by benchmarks/diagnostics.py).
- ``leaderboard.md``: the same, "mean ± std", one table per stream.
- ``per_seed.csv``: every cell's status and summary metrics.
- ``plots/<stream>_sessions.png`` (headline metric after each session, mean line and std band
  over seeds), ``<stream>_last.png`` (last-session bars) and ``<stream>_groups.png``
  (head / medium / tail bars).

Failed cells appear in ``per_seed.csv`` only.
"""
from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path
from typing import Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from benchmarks.runner.store import Store  # noqa: E402
from benchmarks.runner.version import code_version  # noqa: E402

# The per-session metric of each label mode; the headline is its average over sessions.
SESSION_METRIC = {"multi": "mAP", "single": "acc"}
GROUPS = ("head", "medium", "tail")
ROW = ["stream", "method", "config"]
# The columns of per_seed.csv before the summary metrics.
CELL = ["id", *ROW, "seed", "label_mode", "status", "error", "code_version", "wall_time_s"]


def config_label(spec: dict) -> str:
    """The overrides of a spec (hyperparameters, then training config) as ``k=v, ...``,
    each part sorted by key so that equal specs get equal labels."""
    items = [*sorted(spec["hparams"].items()), *sorted(spec["train"].items())]
    return ", ".join(f"{k}={v}" for k, v in items)


def per_seed(records: list[dict]) -> pd.DataFrame:
    """One row per record: identity, status, code version, wall time and summary metrics."""
    rows = []
    for record in records:
        spec = record["spec"]
        rows.append({"id": record["id"], "stream": spec["stream"], "method": spec["method"],
                     "config": config_label(spec), "seed": spec["seed"],
                     "label_mode": (record.get("stream") or {}).get("label_mode"),
                     "status": record["status"], "error": record.get("error"),
                     "code_version": record.get("code_version"),
                     "wall_time_s": record.get("wall_time_s"),
                     **(record.get("summary") or {})})
    frame = pd.DataFrame(rows, columns=list(dict.fromkeys(
        [*CELL, *(k for row in rows for k in row)])))
    return frame.sort_values([*ROW, "seed"], ignore_index=True)


def leaderboard(seeds: pd.DataFrame, current: Optional[str] = None) -> pd.DataFrame:
    """Mean and std over seeds of the done cells of each (stream, method, config)."""
    done = seeds[seeds["status"] == "done"]
    metrics = [c for c in done.columns if c not in CELL and done[c].notna().any()]
    metrics.sort(key=lambda m: m == "forgetting")  # shared by both label modes: last
    rows = []
    for (stream, method, config), cells in done.groupby(ROW, sort=False):
        row = {"stream": stream, "label_mode": cells["label_mode"].iloc[0], "method": method,
               "config": config, "n_seeds": len(cells)}
        for metric in metrics:
            values = pd.to_numeric(cells[metric], errors="coerce")
            row[f"{metric}_mean"], row[f"{metric}_std"] = values.mean(), values.std()
        row["wall_time_s_mean"] = cells["wall_time_s"].mean()
        versions = set(cells["code_version"])
        row["code_versions"] = len(versions)
        row["stale"] = len(versions) > 1 or (current is not None and versions != {current})
        rows.append(row)
    board = pd.DataFrame(rows, columns=[
        "stream", "label_mode", "method", "config", "n_seeds",
        *(f"{m}_{s}" for m in metrics for s in ("mean", "std")),
        "wall_time_s_mean", "code_versions", "stale"])
    board["_headline"] = [row.get(f"avg_{SESSION_METRIC.get(row['label_mode'])}_mean")
                          for _, row in board.iterrows()]
    board = board.sort_values(["stream", "_headline"], ascending=[True, False],
                              ignore_index=True)
    return board.drop(columns="_headline")


def sessions(records: list[dict]) -> pd.DataFrame:
    """One row per (done cell, session) with the session's metrics."""
    rows = [{"stream": r["spec"]["stream"], "method": r["spec"]["method"],
             "config": config_label(r["spec"]), "seed": r["spec"]["seed"],
             "session": s["session"], "n_seen": s["n_seen"], **s["metrics"]}
            for r in records if r["status"] == "done" for s in r["sessions"]]
    return pd.DataFrame(rows)


def markdown(board: pd.DataFrame) -> str:
    """One markdown table per stream, "mean ± std"; stale rows are marked with †."""
    if board.empty:
        return "No finished cells yet.\n"
    parts = []
    for stream, rows in board.groupby("stream", sort=False):
        metrics = [c[:-5] for c in rows.columns
                   if c.endswith("_mean") and c != "wall_time_s_mean" and rows[c].notna().any()]
        header = ["method", "config", "seeds", *metrics, "wall time (s)"]
        lines = [f"## {stream} ({rows['label_mode'].iloc[0]}-label)", "",
                 "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for _, row in rows.iterrows():
            cells = [row["method"] + (" †" if row["stale"] else ""), row["config"],
                     str(row["n_seeds"]),
                     *(_mean_std(row[f"{m}_mean"], row[f"{m}_std"]) for m in metrics),
                     _mean_std(row["wall_time_s_mean"], float("nan"), 1)]
            lines.append("| " + " | ".join(cells) + " |")
        parts.append("\n".join(lines))
    if board["stale"].any():
        parts.append("† results from code other than the current checkout; rerun those "
                     "methods with `--rerun METHOD`.")
    return "\n\n".join(parts) + "\n"


def plot(records: list[dict], board: pd.DataFrame, folder: Path) -> None:
    """Per stream: headline per session, last-session bars, head/medium/tail bars."""
    folder.mkdir(parents=True, exist_ok=True)
    table = sessions(records)
    for stream, rows in board.groupby("stream", sort=False):
        metric = SESSION_METRIC[rows["label_mode"].iloc[0]]
        slug = re.sub(r"[^A-Za-z0-9]+", "_", stream).strip("_")
        labels = [_label(row) for _, row in rows.iterrows()]
        _session_plot(table[table["stream"] == stream], rows, labels, metric,
                      folder / f"{slug}_sessions.png", stream)
        _bars(rows, labels, [f"last_{metric}"], [f"last {metric}"], folder / f"{slug}_last.png",
              stream)
        _bars(rows, labels, [f"last_{g}_{metric}" for g in GROUPS], list(GROUPS),
              folder / f"{slug}_groups.png", f"{stream}: last {metric} by training frequency")


def render(out, current: Optional[str] = None) -> list[Path]:
    """Write leaderboard.csv, leaderboard.md, per_seed.csv and plots/ from ``out/records``."""
    out = Path(out)
    records = list(Store(out).load_all().values())
    seeds = per_seed(records)
    board = leaderboard(seeds, current)
    paths = [out / "leaderboard.csv", out / "leaderboard.md", out / "per_seed.csv"]
    board.to_csv(paths[0], index=False)
    paths[1].write_text(markdown(board))
    seeds.to_csv(paths[2], index=False)
    shutil.rmtree(out / "plots", ignore_errors=True)
    plot(records, board, out / "plots")
    return [*paths, out / "plots"]


def write_tensorboard(record: dict, folder) -> None:
    """Log a cell's per-session metrics for TensorBoard under ``folder/<cell id>``."""
    from torch.utils.tensorboard import SummaryWriter

    log_dir = Path(folder) / record["id"]
    shutil.rmtree(log_dir, ignore_errors=True)
    with SummaryWriter(log_dir=str(log_dir)) as writer:
        for session in record["sessions"]:
            for name, value in session["metrics"].items():
                if value is not None:
                    writer.add_scalar(f"session/{name}", value, session["session"])


def _label(row) -> str:
    return row["method"] + (f" ({row['config']})" if row["config"] else "")


def _mean_std(mean: float, std: float, digits: int = 2) -> str:
    if pd.isna(mean):
        return "–"
    return f"{mean:.{digits}f}" + ("" if pd.isna(std) else f" ± {std:.{digits}f}")


def _session_plot(table, rows, labels, metric, path, title) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for (_, row), label in zip(rows.iterrows(), labels):
        cells = table[(table["method"] == row["method"]) & (table["config"] == row["config"])]
        curve = cells.groupby("n_seen")[metric].agg(["mean", "std"]).fillna({"std": 0})
        ax.plot(curve.index, curve["mean"], marker="o", label=label)
        ax.fill_between(curve.index, curve["mean"] - curve["std"], curve["mean"] + curve["std"],
                        alpha=0.2)
    ax.set(xlabel="classes seen", ylabel=f"{metric} (%)", title=title)
    ax.legend(fontsize="small")
    _save(fig, path)


def _bars(rows, labels, columns, names, path, title) -> None:
    fig, ax = plt.subplots(figsize=(max(4, 1.5 * len(columns) * len(rows) ** 0.5), 4))
    width = 0.8 / len(rows)
    for i, ((_, row), label) in enumerate(zip(rows.iterrows(), labels)):
        xs = [j + (i - (len(rows) - 1) / 2) * width for j in range(len(columns))]
        ax.bar(xs, [row.get(f"{c}_mean", float("nan")) for c in columns], width,
               yerr=[row.get(f"{c}_std", float("nan")) for c in columns], capsize=3,
               label=label)
    ax.set_xticks(range(len(columns)), names)
    ax.set(ylabel="%", title=title)
    ax.legend(fontsize="small")
    _save(fig, path)


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report",
                                     description="Re-render the leaderboard and plots of a "
                                                 "results folder from its records.")
    parser.add_argument("dir", help="a results folder (holding records/)")
    args = parser.parse_args(argv)
    if not (Path(args.dir) / "records").is_dir():
        print(f"error: {args.dir} holds no records/ folder; expected a results folder "
              "written by python -m benchmarks.run", file=sys.stderr)
        return 2
    print(" ".join(str(p) for p in render(args.dir, code_version())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
