"""python -m benchmarks.crosscheck: the suite's cells against Avalanche 0.6's own strategies.

    python -m benchmarks.crosscheck --methods finetune,replay,lwf,icarl,bic \\
        --streams digits-lt:B0-C2 --seeds 0,1,2 --out results/crosscheck

For every method, every pair of benchmarks/crosscheck/pairs.py and every seed it runs the
suite's cell (benchmarks.cell.run_cell, nothing stored) and the matching Avalanche strategy
(avalanche_side.py) from the same initial weights on the same tensors, and writes to
``--out``: ``crosscheck.csv`` and ``crosscheck.md`` (per pair and metric: both means with
their 95% intervals over seeds, the paired difference suite - Avalanche with its 95%
interval, whether the interval holds 0, and the pair's notes), ``per_seed.csv`` and
``command.txt``. A rerun of the same command keeps the rows of ``per_seed.csv`` and runs
only the missing ones (e.g. a pair added since). Single-label streams only (Avalanche's strategies take class indices).

Exit status: 0 done; 2 bad input (one ``error:`` line, before any work).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.run import Parser, UsageError, _at_least, _usage_error, check_writable

from .pairs import PAIRS


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m benchmarks.crosscheck",
               description="Run the suite's cells and Avalanche's own strategies with matched "
                           "settings; write a table of paired differences.")
    p.add_argument("--methods", required=True,
                   help=f"comma-separated, of: {', '.join(PAIRS)}")
    p.add_argument("--streams", default="digits-lt:B0-C2",
                   help="comma-separated single-label streams (default digits-lt:B0-C2)")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated integer seeds")
    p.add_argument("--epochs", type=_at_least(int, 1),
                   help="epochs per session on both sides (default: the stream's recipe)")
    p.add_argument("--threads", type=_at_least(int, 1), default=1, help="torch threads")
    p.add_argument("--out", default="results/crosscheck", help="output folder")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


def check(args) -> tuple[list[str], list[str], list[int]]:
    """Methods, streams and seeds, validated (torch-free)."""
    from benchmarks import streams
    from benchmarks.runner.grid import GridError, parse_seeds, split_list

    methods = split_list(args.methods)
    unknown = [m for m in methods if m not in PAIRS]
    if unknown or not methods:
        raise UsageError(f"--methods {args.methods!r}: unknown {', '.join(unknown) or 'none'}; "
                         f"accepted: {', '.join(PAIRS)}")
    names = split_list(args.streams)
    for name in names:
        try:
            streams.check(name)
            dataset, _ = streams.parse(name)
        except streams.StreamError as exc:
            raise UsageError(str(exc)) from None
        if dataset.label_mode != "single":
            raise UsageError(f"--streams {name}: {dataset.label_mode}-label; Avalanche's "
                             "strategies take class indices, so only single-label streams "
                             "are accepted (e.g. digits-lt:B0-C2)")
    try:
        seeds = parse_seeds(args.seeds)
    except GridError as exc:
        raise UsageError(str(exc)) from None
    check_writable(Path(args.out))
    return methods, names, seeds


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = parser().parse_args(argv)
        methods, names, seeds = check(args)
    except UsageError as exc:
        return _usage_error(exc)
    from .table import command_line, crosscheck, done_rows, write

    rows = crosscheck(methods, names, seeds, args.epochs, args.threads, not args.quiet,
                      done_rows(Path(args.out), argv))
    write(rows, Path(args.out), command_line(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
