"""Run the pairs over seeds and write the agreement table."""
from __future__ import annotations

import shlex
from pathlib import Path

import pandas as pd

from benchmarks.runner.store import write_text
from benchmarks.stats import ci95

from .pairs import METRICS, PAIRS


def crosscheck(methods: list[str], names: list[str], seeds: list[int], epochs, threads: int,
               progress: bool, done: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (stream, pair, seed) with both sides' ``METRICS``; the rows of ``done``
    (an earlier per_seed table) are kept, not run again."""
    import torch

    import methods as registry
    from benchmarks import streams
    from benchmarks.cell import build_model, resolve_train, run_cell
    from benchmarks.runner.spec import RunSpec

    from . import avalanche_side

    torch.set_num_threads(threads)
    registry.discover()
    wanted = {(name, pair.row, seed) for name in names for method in methods
              for pair in PAIRS[method] for seed in seeds}
    rows = [] if done is None else done.to_dict("records")
    have = {(r["stream"], r["pair"], r["seed"]) for r in rows}
    for name in names:
        benchmark, info = streams.build(name)
        for method in methods:
            for pair in PAIRS[method]:
                train = {**pair.train, **({"epochs": epochs} if epochs else {})}
                for seed in seeds:
                    if (name, pair.row, seed) in have:
                        continue
                    record = run_cell(RunSpec(pair.method, name, seed, pair.hparams, train))
                    if record["status"] != "done":
                        raise RuntimeError(f"{pair.row} seed {seed}: {record['error']}")
                    resolved = resolve_train(info.recipe, train)
                    model = build_model(benchmark, info, resolved, seed)
                    theirs = avalanche_side.run(pair.variant, benchmark, info, model, resolved,
                                                record["hparams"], seed)
                    row = {"stream": name, "pair": pair.row, "seed": seed}
                    for metric in METRICS:
                        row[f"suite_{metric}"] = record["summary"][metric]
                        row[f"avalanche_{metric}"] = theirs[metric]
                    rows.append(row)
                    if progress:
                        print(f"{name} {pair.row} seed {seed}: " + ", ".join(
                            f"{m} {row[f'suite_{m}']:.1f} / {row[f'avalanche_{m}']:.1f}"
                            for m in METRICS if row[f"suite_{m}"] is not None),
                            file=__import__("sys").stderr, flush=True)
    keep = [(r["stream"], r["pair"], r["seed"]) in wanted for r in rows] if rows else []
    return pd.DataFrame([r for r, k in zip(rows, keep) if k])


def summary(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Per (stream, pair, metric): both sides' means and 95% intervals over seeds, the mean
    paired difference suite - Avalanche with its 95% interval, and whether it holds 0."""
    notes = {pair.row: pair.notes for pairs in PAIRS.values() for pair in pairs}
    order = {row: i for i, row in enumerate(notes)}
    per_seed = per_seed.sort_values("pair", key=lambda rows: rows.map(order), kind="stable")
    rows = []
    for (stream, pair), cells in per_seed.groupby(["stream", "pair"], sort=False):
        for metric in METRICS:
            suite = pd.to_numeric(cells[f"suite_{metric}"], errors="coerce")
            theirs = pd.to_numeric(cells[f"avalanche_{metric}"], errors="coerce")
            diff = (suite - theirs).dropna()
            half = ci95(diff)
            rows.append({"stream": stream, "pair": pair, "metric": metric, "n_seeds": len(diff),
                         "suite_mean": suite.mean(), "suite_ci95": ci95(suite),
                         "avalanche_mean": theirs.mean(), "avalanche_ci95": ci95(theirs),
                         "diff_mean": diff.mean(), "diff_ci95": half,
                         "agrees": bool(half == half and abs(diff.mean()) <= half)
                         or bool((diff == 0).all()),
                         "notes": notes.get(pair, "")})
    return pd.DataFrame(rows)


def markdown(table: pd.DataFrame) -> str:
    """The table as markdown: numbers as ``mean ± ci95``, notes once per pair below it."""
    def pm(mean, half):
        return f"{mean:.1f}" + ("" if half != half else f" ± {half:.1f}")

    lines = ["| stream | pair | metric | seeds | suite | Avalanche | suite - Avalanche | "
             "0 in interval |", "|---|---|---|---|---|---|---|---|"]
    for r in table.itertuples():
        lines.append(f"| {r.stream} | {r.pair} | {r.metric} | {r.n_seeds} | "
                     f"{pm(r.suite_mean, r.suite_ci95)} | {pm(r.avalanche_mean, r.avalanche_ci95)}"
                     f" | {pm(r.diff_mean, r.diff_ci95)} | {'yes' if r.agrees else 'no'} |")
    lines += ["", "Intervals: 95% Student-t over seeds (benchmarks/stats.py); the difference is "
              "paired by seed (same initial weights on both sides).", "", "Notes:", ""]
    for pair, notes in table.drop_duplicates("pair")[["pair", "notes"]].itertuples(index=False):
        lines.append(f"- **{pair}**: {notes}")
    return "\n".join(lines) + "\n"


def write(per_seed: pd.DataFrame, out: Path, command: str) -> None:
    """crosscheck.csv, crosscheck.md, per_seed.csv and command.txt in ``out``."""
    table = summary(per_seed)
    write_text(out / "per_seed.csv", per_seed.to_csv(index=False))
    write_text(out / "crosscheck.csv", table.to_csv(index=False))
    write_text(out / "crosscheck.md", markdown(table))
    write_text(out / "command.txt", command + "\n")


def done_rows(out: Path, argv: list[str]) -> pd.DataFrame | None:
    """The per_seed rows of an earlier run of the same command (``epochs`` and ``threads``
    included) in ``out``, or None."""
    command = out / "command.txt"
    if not (out / "per_seed.csv").exists() or not command.exists():
        return None
    if command.read_text().strip() != command_line(argv):
        return None
    return pd.read_csv(out / "per_seed.csv")


def command_line(argv: list[str]) -> str:
    """The command, without ``--quiet`` (which changes no number)."""
    return "python -m benchmarks.crosscheck " + " ".join(shlex.quote(a) for a in argv
                                                         if a != "--quiet")
