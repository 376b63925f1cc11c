"""``report.html``: a results folder as one self-contained static page, to open from disk in
a browser (no server, no network).

The page holds, first, the cross-stream summary (summary.md's markdown, converted with
Python-Markdown, each figure after the paragraph that names it); then per stream the
leaderboard as a sortable table (headline columns first, the rest behind a toggle; the best
of each column bold), the paired differences to the baseline of every metric (a significant
one coloured and starred), each row's provenance (code versions, tuning, config, seeds,
threads) in the method cell's hover title and in a details block, and the stream's figures.
The layout is a Jinja2 template (``benchmarks/templates/report.html.j2``, package data); the
figures are the PNGs benchmarks/plots.py drew into ``plots/``, embedded as base64 data URIs;
sorting and the column toggle are a few lines of inline JavaScript.
"""
from __future__ import annotations

import base64
import re
from pathlib import Path

import jinja2
import markdown
import pandas as pd

from benchmarks import tables
from benchmarks.plots import slug

ENVIRONMENT = jinja2.Environment(loader=jinja2.PackageLoader("benchmarks", "templates"),
                                 autoescape=True, undefined=jinja2.StrictUndefined)
# The figures of benchmarks/plots.py per stream, with what each shows.
FIGURES = {"sessions": "the headline metric after each session (band: 95% CI over seeds)",
           "last": "after the last session: all seen, old and new classes",
           "groups": "after the last session: head, medium and tail classes",
           "per_class": "each class after the last session against its training count"}


def page(folder: Path, board: pd.DataFrame, pairs: pd.DataFrame, seeds: pd.DataFrame,
         summary: str, session_metric: dict, version: str = None) -> str:
    """The page of results folder ``folder``: ``board`` its leaderboard rows, ``pairs`` its
    paired differences, ``seeds`` its per-seed cells, ``summary`` summary.md's markdown;
    ``session_metric`` maps a label mode to its metric, ``version`` is the current code's."""
    plots = Path(folder) / "plots"
    streams = [_stream(stream, rows, pairs, seeds[seeds["stream"] == stream], plots,
                       session_metric[rows["label_mode"].iloc[0]])
               for stream, rows in board.groupby("stream", sort=False)]
    return ENVIRONMENT.get_template("report.html.j2").render(
        title=Path(folder).resolve().name, version=version,
        baseline=tables.baseline(pairs), n_cells=len(seeds),
        n_failed=int((seeds["status"] != "done").sum()) if len(seeds) else 0,
        summary=_summary(summary, plots), streams=streams)


def _summary(summary: str, plots: Path) -> str:
    """summary.md's markdown as HTML, each cross-stream figure (``plots/summary_*.png``)
    embedded after the paragraph that names it, any it does not name at the end."""
    drawn = sorted(path.name for path in plots.glob("summary_*.png"))
    blocks, shown = [], set()
    for block in summary.split("\n\n"):
        blocks.append(block)
        for name in re.findall(r"plots/(summary_\w+\.png)", block):
            if name in drawn and name not in shown:
                blocks.append(f"![{name}]({_image(plots / name)})")
                shown.add(name)
    blocks += [f"![{name}]({_image(plots / name)})" for name in drawn if name not in shown]
    return markdown.markdown("\n\n".join(blocks), extensions=["tables"])


def _stream(stream, rows, pairs, seeds, plots, metric) -> dict:
    first = tables.headline(rows, metric, short=True)
    rest = [m for m in tables.metrics(rows) if m not in first]
    baseline = tables.baseline(pairs)
    differences = tables.delta_columns(metric) if baseline else []
    origin = _provenance(rows, seeds)
    delta = {m: tables.deltas(rows, pairs, m) for m in differences}
    best = {m: tables.best(rows[f"{m}_mean"], m) for m in first + rest}
    columns = ([_column("method"), _column("config"), _column("seeds")]
               + [_column(tables.label(m)) for m in first]
               + [_column(f"Δ {tables.label(m)} vs {baseline}") for m in differences]
               + [_column(tables.label(m), extra=True) for m in rest]
               + [_column(c, extra=True) for c in ("tuning", "threads", "wall time (s)")])
    body = []
    for index, row in rows.iterrows():
        cells = ([_text(row["method"] + (" †" if row["stale"] else ""),
                        title=origin.loc[index, "title"]),
                  _text(tables.short_config(row["config"])),
                  _number(row["n_seeds"], f"{row['n_seeds']}")]
                 + [_metric(row, m, best[m][index]) for m in first]
                 + [_delta(delta[m].loc[index], m) for m in differences]
                 + [_metric(row, m, best[m][index], extra=True) for m in rest]
                 + [_text(row["tuning"], extra=True),
                    _number(row["threads"], "–" if pd.isna(row["threads"])
                            else f"{int(row['threads'])}", extra=True),
                    _number(row["wall_time_s_mean"],
                            tables.mean_ci(row["wall_time_s_mean"], float("nan")) or "–",
                            extra=True)])
        body.append(cells)
    return {"name": stream, "id": slug(stream), "label_mode": rows["label_mode"].iloc[0],
            "metric": metric, "columns": columns, "rows": body,
            "stale": bool(rows["stale"].any()),
            "paired": _paired(rows, pairs, first, rest),
            "provenance": origin.drop(columns="title").to_dict("records"),
            "figures": [{"src": _image(plots / f"{slug(stream)}_{kind}.png"),
                         "caption": caption} for kind, caption in FIGURES.items()
                        if (plots / f"{slug(stream)}_{kind}.png").is_file()]}


def _paired(rows, pairs, first, rest) -> dict:
    """The paired differences of each row to the baseline, one column per metric (the
    headline metrics first, the rest behind the toggle); None without a baseline."""
    if tables.baseline(pairs) is None:
        return None
    differences = {m: tables.deltas(rows, pairs, m) for m in first + rest}
    body = []
    for index, row in rows.iterrows():
        n_pairs = max((d.loc[index, "n_pairs"] for d in differences.values()
                       if pd.notna(d.loc[index, "n_pairs"])), default=None)
        if n_pairs is not None:
            body.append([_text(row["method"]), _text(tables.short_config(row["config"])),
                         _number(n_pairs, f"{int(n_pairs)}")]
                        + [_delta(differences[m].loc[index], m, extra=m in rest)
                           for m in first + rest])
    return {"columns": [_column("method"), _column("config"), _column("pairs")]
            + [_column(f"Δ {tables.label(m)}", extra=m in rest)
               for m in first + rest], "rows": body}


def _provenance(rows: pd.DataFrame, seeds: pd.DataFrame) -> pd.DataFrame:
    """Per leaderboard row (index kept): its seeds, code versions, tuning, config,
    hyperparameter overrides, threads, pretrained and failed cells, and all of it as one
    line (``title``)."""
    done = seeds["status"] == "done"
    cells = seeds.assign(seed=seeds["seed"].astype(object).where(done),
                         version=seeds["code_version"].where(done),
                         failed=~done)
    grouped = cells.groupby(tables.ROW, sort=False, dropna=False).agg(
        seeds=("seed", _listing), versions=("version", _listing),
        failed=("failed", "sum")).reset_index()
    grouped = grouped.rename(columns={"versions": "code versions", "failed": "failed cells"})
    origin = rows[tables.ROW + ["tuning", "hparams_config", "pretrained"]].merge(
        grouped, on=tables.ROW, how="left")
    origin.index = rows.index
    origin = origin.rename(columns={"hparams_config": "overrides"})
    origin["title"] = ["; ".join(f"{k}: {v}" for k, v in record.items()
                                 if k not in ("stream", "method") and v not in ("", None))
                       for record in origin.to_dict("records")]
    return origin.drop(columns="stream")


def _listing(values: pd.Series) -> str:
    """The distinct values present, sorted, as ``a, b, c``."""
    return ", ".join(str(v) for v in sorted(set(values.dropna())))


def _column(name: str, extra: bool = False) -> dict:
    return {"name": name, "extra": extra}


def _text(text, title: str = None, extra: bool = False) -> dict:
    return {"text": str(text), "value": None, "title": title, "extra": extra, "kind": ""}


def _number(value, text: str, extra: bool = False) -> dict:
    return {"text": text, "value": "" if pd.isna(value) else f"{value}", "title": None,
            "extra": extra, "kind": ""}


def _metric(row, metric: str, best: bool, extra: bool = False) -> dict:
    mean, half = row[f"{metric}_mean"], row[f"{metric}_ci95"]
    cell = _number(mean, tables.mean_ci(mean, half) or "–", extra)
    cell["kind"] = "best" if best else ""
    return cell


def _delta(pair: pd.Series, metric: str, extra: bool = False) -> dict:
    """A paired difference "+d ± h", starred and coloured by direction when significant."""
    mean, half = pair["diff_mean"], pair["diff_ci95"]
    if pd.isna(mean):
        return _number(mean, "–", extra)
    cell = _number(mean, tables.mean_ci(mean, half, sign=True)
                   + (" *" if pair["significant"] else ""), extra)
    if pair["significant"]:
        better = (mean < 0) == (metric in tables.LOWER_IS_BETTER)
        cell["kind"] = "better" if better else "worse"
    return cell


def _image(path: Path):
    """``path`` as a data URI, or None when it is absent."""
    if not path.is_file():
        return None
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
