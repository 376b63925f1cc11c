"""Leaderboard, paired comparisons and plots from the records of a results folder.

``python -m benchmarks.report DIR [--baseline NAME]`` (re-)renders, from every record of
``DIR/records`` (``benchmarks.run`` renders its folder the same way, so a command never leaves
the folder's report with fewer rows than it had):

- ``leaderboard.csv``: one row per (stream, method, config, threads): ``n_seeds``, and for
  every summary metric ``<metric>_mean``, ``<metric>_std`` (sample std over seeds) and
  ``<metric>_ci95`` (half-width of the two-sided 95% Student-t interval of the mean over
  seeds, NaN with fewer than 2 seeds); mean wall time (machine load included),
  ``code_versions`` (the distinct code versions of its records, ``;``-separated) and
  ``stale`` (some record comes from code other than the current checkout's, or from an
  older version of its plugin file); sorted by the headline metric (avg_mAP or avg_acc)
  within each stream. ``config`` names the overrides of the
  row's cells; ``threads`` is the torch thread count the cells ran with, which changes
  numbers on a CPU, so cells of different thread counts are never averaged together.
  Methods with a memory also get ``last_mem_FPR`` / ``last_mem_FNR``, the false-positive
  and false-negative rates (%) of the memory's labels in the last session against the
  true labels, and ``last_mem_balance``, the KL divergence of its per-class positive counts
  from uniform over the seen classes (summary metrics written by benchmarks/diagnostics.py).
- ``paired.csv``: for each other row, the per-seed difference to the folder's baseline
  (benchmarks/baseline.py: the rule that picks it, the names it takes, and
  ``baseline.txt``, where it is recorded) on the same stream, training config (or tuning)
  and threads, over the seeds both have: ``diff_mean``, ``diff_ci95`` (Student t
  over the paired differences) and ``significant`` (the interval excludes 0); see
  benchmarks/stats.py.
- ``leaderboard.md``: one table per stream of the headline metrics (``tables.HEADLINE``, units
  and definitions under the tables), "mean ± 95% CI half-width" rounded to what the interval
  supports, with the paired difference of the first two to the baseline (``*``: the
  interval excludes 0).
- ``per_seed.csv``: every cell's status and summary metrics.
- ``per_class.csv``: every row's final value per class (mean over seeds) with the class's
  name and training count: the table behind the per-class plot.
- ``summary.md``: which method wins overall, with what confidence (benchmarks/aggregates.py,
  docs/aggregates.md): per stream a normalised score (x - finetune) / (joint - finetune) of
  the headline, and across streams and seeds each method's interquartile mean and the
  probability that it improves on each other, with 95% stratified-bootstrap intervals; then
  the mean ranks over streams, the Friedman test (with a permutation p-value) and the Nemenyi
  critical difference (its diagram only when it can separate a pair); figures
  ``plots/summary_iqm.png``, ``plots/summary_improvement.png`` (``plots/summary_ranks.png``);
  with both label modes, the same for each mode's streams on their own.
  A method enters with one configuration: its tuned one (``tuning`` names the budget) or its
  config; only those present on every stream are compared. A folder run from a
  ``tuned.yaml`` adds how each configuration was chosen (benchmarks/studies.py).
- ``plots/``: per stream, the figures of benchmarks/plots.py (the baseline marked).
- ``leaderboard.tex`` (benchmarks/latex.py) and ``report.html``, the folder as one page for a
  browser (benchmarks/html_report.py); see docs/report.md.

Failed cells appear in ``per_seed.csv`` only. Every file is written atomically (a temp file,
then a rename; the plots to a temp folder swapped in at the end), so a failure or a kill
leaves the previous report whole.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Iterable, Optional

import pandas as pd

from benchmarks import aggregates, studies, tables
from benchmarks import baseline as baselines
from benchmarks.html_report import page
from benchmarks.latex import latex
from benchmarks.plots import plot_stream
from benchmarks.runner.grid import TUNED_KEYS
from benchmarks.runner.store import Store, umask, write_text
from benchmarks.runner.version import cell_version, code_version
from benchmarks.stats import ci95, paired_differences

# The per-session metric of each label mode; the headline is its average over sessions.
SESSION_METRIC = {"multi": "mAP", "single": "acc"}
GROUPS = ("head", "medium", "tail")
ROW = ["stream", "method", "config", "threads"]
# Where a method meets its baseline in a paired comparison: the same stream, threads, and
# training config; or, for tuned cells (each method at its own tuned learning rate), the same
# tuning and the same other training flags (a tuned method meets the baseline tuned with the
# same budget and run with the same head).
PAIRED_ON = ["stream", "paired_config", "threads"]
# The columns of per_seed.csv before the summary metrics.
CELL = ["id", *ROW, "hparams_config", "train_config", "paired_config", "seed", "tuning",
        "suite", "label_mode", "pretrained", "status", "error", "code_version", "stale",
        "wall_time_s"]


def _items(overrides: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(overrides.items()))


def config_label(spec: dict) -> str:
    """The overrides of a spec (hyperparameters, then training config) as ``k=v, ...``,
    each part sorted by key so that equal specs get equal labels."""
    return ", ".join(filter(None, [_items(spec["hparams"]), _items(spec["train"])]))


def _paired_config(spec: dict) -> str:
    """Where a cell meets its baseline (``PAIRED_ON``): its training config; for a tuned
    cell, its tuning and the training flags its tuned.yaml entry does not set (``TUNED_KEYS``:
    all but the learning rate), so that a ``head_init=kaiming`` run meets the baseline's."""
    if not spec.get("tuning"):
        return _items(spec["train"])
    fixed = _items({k: v for k, v in spec["train"].items() if k not in TUNED_KEYS})
    return f"tuned: {spec['tuning']}" + (f", {fixed}" if fixed else "")


def per_seed(records: list[dict], current: Optional[str] = None) -> pd.DataFrame:
    """One row per record: identity, status, code version (``stale`` when it is not the
    version the current suite ``current`` and the record's method file give), wall time and
    summary metrics."""
    rows = []
    for record in records:
        spec = record["spec"]
        version = record.get("code_version")
        now = current and cell_version(current, record.get("method_source"))
        rows.append({"id": record["id"], "stream": spec["stream"], "method": spec["method"],
                     "config": config_label(spec),
                     "threads": (record.get("env") or {}).get("threads"),
                     "hparams_config": _items(spec["hparams"]),
                     "train_config": _items(spec["train"]), "seed": spec["seed"],
                     "tuning": spec.get("tuning", ""), "suite": spec.get("suite", ""),
                     "paired_config": _paired_config(spec),
                     "label_mode": (record.get("stream") or {}).get("label_mode"),
                     "pretrained": bool(record.get("pretrained")),
                     "status": record["status"], "error": record.get("error"),
                     "code_version": version, "stale": bool(now) and version != now,
                     "wall_time_s": record.get("wall_time_s"),
                     **(record.get("summary") or {})})
    frame = pd.DataFrame(rows, columns=list(dict.fromkeys(
        [*CELL, *(k for row in rows for k in row)])))
    return frame.sort_values([*ROW, "seed"], ignore_index=True)


def summary_metrics(seeds: pd.DataFrame) -> list[str]:
    """The summary metrics present in ``seeds``, forgetting (shared by both modes) last."""
    metrics = [c for c in seeds.columns if c not in CELL and seeds[c].notna().any()]
    return sorted(metrics, key=lambda m: m == "forgetting")


def leaderboard(seeds: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and 95% interval over seeds of the done cells of each (stream, method,
    config, threads)."""
    done = seeds[seeds["status"] == "done"]
    metrics = summary_metrics(done)
    rows = []
    for (stream, method, config, threads), cells in done.groupby(ROW, sort=False, dropna=False):
        row = {"stream": stream, "label_mode": cells["label_mode"].iloc[0], "method": method,
               "config": config, "threads": threads,
               "hparams_config": cells["hparams_config"].iloc[0],
               "tuning": cells["tuning"].iloc[0] or "defaults",
               "suite": ", ".join(sorted(set(cells["suite"]) - {""})),
               "pretrained": bool(cells["pretrained"].all()), "n_seeds": len(cells)}
        for metric in metrics:
            values = pd.to_numeric(cells[metric], errors="coerce")
            row[f"{metric}_mean"], row[f"{metric}_std"] = values.mean(), values.std()
            row[f"{metric}_ci95"] = ci95(values)
        row["wall_time_s_mean"] = cells["wall_time_s"].mean()
        versions = sorted(set(cells["code_version"].dropna()))
        row["code_versions"] = "; ".join(versions)
        row["stale"] = len(versions) > 1 or bool(cells["stale"].any())
        rows.append(row)
    board = pd.DataFrame(rows, columns=[
        "stream", "label_mode", "method", "config", "threads", "hparams_config", "tuning",
        "suite", "pretrained", "n_seeds",
        *(f"{m}_{s}" for m in metrics for s in ("mean", "std", "ci95")),
        "wall_time_s_mean", "code_versions", "stale"])
    board["_headline"] = [row.get(f"avg_{SESSION_METRIC.get(row['label_mode'])}_mean")
                          for _, row in board.iterrows()]
    board = board.sort_values(["stream", "_headline"], ascending=[True, False],
                              ignore_index=True)
    return board.drop(columns="_headline")


def sessions(records: list[dict]) -> pd.DataFrame:
    """One row per (done cell, session) with the session's metrics."""
    rows = [{"stream": r["spec"]["stream"], "method": r["spec"]["method"],
             "config": config_label(r["spec"]), "threads": (r.get("env") or {}).get("threads"),
             "seed": r["spec"]["seed"],
             "session": s["session"], "n_seen": s["n_seen"], **s["metrics"]}
            for r in records if r["status"] == "done" for s in r["sessions"]]
    return pd.DataFrame(rows, columns=list(dict.fromkeys(
        ["stream", "method", "config", "threads", "seed", "session", "n_seen",
         *(k for row in rows for k in row)])))


def final_per_class(records: list[dict]) -> pd.DataFrame:
    """One row per (done cell, class) with the class's name, final value and training
    count."""
    rows = []
    for r in records:
        if r["status"] != "done" or not r["sessions"]:
            continue
        stream = r.get("stream") or {}
        names = stream.get("class_names") or []
        for c, (value, count) in enumerate(zip(r["sessions"][-1].get("per_class", []),
                                               stream.get("class_counts", []))):
            if value is not None:
                rows.append({"stream": r["spec"]["stream"], "method": r["spec"]["method"],
                             "config": config_label(r["spec"]),
                             "threads": (r.get("env") or {}).get("threads"),
                             "seed": r["spec"]["seed"], "class": c,
                             "name": names[c] if c < len(names) else str(c), "count": count,
                             "value": value})
    return pd.DataFrame(rows, columns=["stream", "method", "config", "threads", "seed",
                                      "class", "name", "count", "value"])


def paired(seeds: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Paired differences of every summary metric to ``baseline`` (a name of
    benchmarks/baseline.py); empty when the baseline has no cells."""
    done = seeds[seeds["status"] == "done"]
    base = baselines.parse(baseline)
    return paired_differences(done, base.cells(done), base.name, summary_metrics(done),
                              base.keys(PAIRED_ON))


NOTE = ("All values in % (forgetting in percentage points, pp: over the old classes, the "
        "mean of each one's largest drop from an earlier session to the last), as mean ± "
        "the half-width of the 95% Student-t interval over seeds (no interval with one "
        "seed), each rounded to the precision its interval supports. avg: mean over "
        "sessions; last: after the last session; old / new: classes of earlier sessions / "
        "of the last one; tail: the rarest third of classes by training count; CF1/OF1: "
        "per-class / overall F1 with scores thresholded at 0.8. Every other column (head "
        "and medium splits, memory-label diagnostics, standard deviations, wall time, code "
        "versions) is in leaderboard.csv.")


def markdown(board: pd.DataFrame, pairs: Optional[pd.DataFrame] = None) -> str:
    """One markdown table per stream: the headline metrics (``tables.HEADLINE``) as "mean ±
    95% CI", rounded to what the interval supports, and the paired difference of the two
    first to the baseline; stale rows are marked with †."""
    if board.empty:
        return "No finished cells yet.\n"
    pairs = pairs if pairs is not None else pd.DataFrame(columns=["metric"])
    baseline = pairs["baseline"].iloc[0] if len(pairs) else None
    parts = []
    for stream, rows in board.groupby("stream", sort=False):
        mode = rows["label_mode"].iloc[0]
        names = tables.HEADLINE[SESSION_METRIC[mode]]
        metrics = {m: names[m] for m in tables.headline(rows, SESSION_METRIC[mode])}
        deltas = tables.delta_columns(SESSION_METRIC[mode]) if baseline else []
        threads = rows["threads"].nunique(dropna=False) > 1
        header = ["method", "config", "seeds",
                  *(f"{h} ({'pp' if m == 'forgetting' else '%'})" for m, h in metrics.items()),
                  *(f"Δ {names[m]} vs {baseline}" for m in deltas),
                  *(["threads"] if threads else [])]
        suite = ", ".join(sorted(set(", ".join(rows["suite"]).split(", ")) - {""}))
        lines = [f"## {stream} ({mode}-label" + (f"; suite {suite}" if suite else "") + ")", "",
                 "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for _, row in rows.iterrows():
            cells = [row["method"] + (" †" if row["stale"] else ""),
                     tables.short_config(row["config"]), str(row["n_seeds"]),
                     *(tables.mean_ci(row[f"{m}_mean"], row[f"{m}_ci95"]) or "–"
                       for m in metrics),
                     *(_difference(pairs, row, m) for m in deltas),
                     *([str(row["threads"])] if threads else [])]
            lines.append("| " + " | ".join(cells) + " |")
        parts.append("\n".join(lines))
    parts.append(NOTE + (f" Δ: paired difference to {baseline} over the seeds both have, with "
                         "its 95% interval; * marks an interval that excludes 0."
                         if baseline else ""))
    if board["stale"].any():
        parts.append("† results from code other than the current checkout (or an older "
                     "version of the method's plugin file); rerun those methods with "
                     "`--rerun METHOD`.")
    return "\n\n".join(parts) + "\n"


def class_table(per_class: pd.DataFrame) -> pd.DataFrame:
    """Each row's final value per class, mean over seeds, with the class's name and count."""
    keys = ["stream", "method", "config", "threads", "class", "name", "count"]
    return per_class.groupby(keys, sort=False, dropna=False)["value"].mean().reset_index()


def summary(folder: Path, seeds: pd.DataFrame) -> str:
    """summary.md's text (benchmarks/aggregates.py: IQM and probability of improvement with
    intervals, ranks, Friedman, Nemenyi CD, head-init sensitivity) and its figures, from the
    per-seed table: each done cell's headline."""
    done = seeds[seeds["status"] == "done"]
    runs = done[["stream", "method", "tuning", "config", "hparams_config", "train_config",
                 "seed"]].assign(value=[
                     row.get(f"avg_{SESSION_METRIC.get(row['label_mode'])}")
                     for _, row in done.iterrows()])
    return aggregates.summary(runs, folder, dict(zip(done["stream"], done["label_mode"])))


def plot(records: list[dict], board: pd.DataFrame, folder: Path,
         baseline: Optional[str] = None) -> str:
    """Every figure of benchmarks/plots.py, per stream, and the cross-stream summary, into a
    temp folder swapped in for ``folder`` once all are drawn; returns summary.md's text."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    fresh = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        table, per_class = sessions(records), final_per_class(records)
        for stream, rows in board.groupby("stream", sort=False):
            plot_stream(stream, SESSION_METRIC[rows["label_mode"].iloc[0]], rows,
                        table[table["stream"] == stream],
                        per_class[per_class["stream"] == stream], fresh, baseline)
        text = summary(fresh, per_seed(records))
        fresh.chmod(0o777 & ~umask())
        old = folder.with_name(f".{folder.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if folder.exists():
            os.replace(folder, old)
        os.replace(fresh, folder)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(fresh, ignore_errors=True)
    return text


def render(out, current: Optional[str] = None, baseline: Optional[str] = None,
           methods: Iterable[str] = (), rendered_by: Optional[str] = None) -> list[Path]:
    """Write leaderboard.csv, leaderboard.md, paired.csv, per_seed.csv, per_class.csv,
    summary.md, plots/, leaderboard.tex and report.html from every record of
    ``out/records``, each atomically; the baseline is chosen and recorded by
    :func:`benchmarks.baseline.choose` (``methods``: the grid's, in --methods order, for its
    fallback). Rows are stale against ``current``; ``rendered_by``, the rendering code's
    version when it is another, is named in leaderboard.md and summary.md."""
    out = Path(out)
    records = list(Store(out).load_all().values())
    seeds = per_seed(records, current)
    board = leaderboard(seeds)
    baseline = baselines.choose(out, baseline, [*methods, *sorted(seeds["method"])])
    pairs = paired(seeds, baseline)
    paths = [out / name for name in ("leaderboard.csv", "leaderboard.md", "paired.csv",
                                     "per_seed.csv", "per_class.csv")]
    against = (f"\n\nRendered by code {rendered_by}; † and the stale column compare the "
               f"records with {current} (benchmarks.report --against).\n"
               if rendered_by and rendered_by != current else "")
    for path, text in zip(paths, (board.to_csv(index=False), markdown(board, pairs) + against,
                                  pairs.to_csv(index=False), seeds.to_csv(index=False),
                                  class_table(final_per_class(records)).to_csv(index=False))):
        write_text(path, text)
    text = plot(records, board, out / "plots", baseline) + studies.section(out) + against
    write_text(out / "summary.md", text)
    write_text(out / "leaderboard.tex", latex(board, pairs, SESSION_METRIC))
    write_text(out / "report.html", page(out, board, pairs, seeds, text, SESSION_METRIC,
                                             rendered_by or current))
    return [*paths, out / "summary.md", out / "plots", baselines.record(out, baseline),
            out / "leaderboard.tex", out / "report.html"]


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


def _difference(pairs: pd.DataFrame, row, metric: str) -> str:
    """The paired difference of ``row`` to the baseline on ``metric``, "+d ± h" (* when the
    interval excludes 0), or "–"."""
    match = pairs[(pairs["metric"] == metric) & (pairs["method"] == row["method"])
                  & (pairs["config"] == row["config"]) & (pairs["stream"] == row["stream"])
                  & (pairs["threads"].isna() if pd.isna(row["threads"])
                     else pairs["threads"] == row["threads"])]
    if match.empty:
        return "–"
    first = match.iloc[0]
    text = tables.mean_ci(first["diff_mean"], first["diff_ci95"], sign=True)
    return text + ("*" if first["significant"] else "")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report",
                                     description="Re-render the leaderboard and plots of a "
                                                 "results folder from its records.")
    parser.add_argument("dir", help="a results folder (holding records/)")
    parser.add_argument("--baseline", metavar="METHOD[(K=V, ...)][[K=V, ...]]",
                        help="pair every row with this method, e.g. replay, "
                             "'replay(negatives=seen)' or 'replay[selection=herding]' "
                             "(recorded in the folder); default: the folder's recorded "
                             f"baseline, else {baselines.DEFAULT} when present, else the "
                             "first method alphabetically")
    parser.add_argument("--against", metavar="VERSION",
                        help="flag rows stale against this code version, one the records "
                             "carry (a published folder's, re-rendered by newer report "
                             "code), instead of the checkout's; both are named in "
                             "leaderboard.md and summary.md")
    args = parser.parse_args(argv)
    if not (Path(args.dir) / "records").is_dir():
        return _error(f"{args.dir} holds no records/ folder; expected a results folder "
                      "written by python -m benchmarks.run")
    records = list(Store(args.dir).load_all().values())
    versions = sorted({str(r.get("code_version")) for r in records})
    if args.against is not None and args.against not in versions:
        return _error(f"--against {args.against}: no record of {args.dir} carries that code "
                      "version; accepted: " + ", ".join(versions))
    if args.baseline:
        try:
            method = baselines.parse(args.baseline).method
        except baselines.BaselineError as exc:
            return _error(str(exc))
        present = sorted({r["spec"]["method"] for r in records})
        if method not in present:
            return _error(f"--baseline {args.baseline}: {method} has no cells in {args.dir}; "
                          "accepted: " + ", ".join(present))
    here = code_version()
    print(" ".join(str(p) for p in render(args.dir, args.against or here, args.baseline,
                                          rendered_by=here)))
    return 0


def _error(message: str) -> int:
    print("error: " + message, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
