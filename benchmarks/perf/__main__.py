"""The performance harness: ``python -m benchmarks.perf [--quick] [--rows 1,3] [--out FILE]
[--methods LIST] [--repeats N] [--stream NAME]``.

Prints a table (markdown) and writes a JSON file (default ``results/perf.json``). Rows:

1. training-step overhead: the suite's ``finetune`` session vs a hand-written loop;
2. cost per training sample of every registered method relative to ``finetune``
   (``--methods replay,bsce?kd=none``: these, a variant's hyperparameters after ``?``;
   ``--repeats N``), in session 1 of digits:B0-C2 / digits-lt:B0-C2 (``--stream NAME``:
   session 1 of that stream instead, for the methods of its label mode);
3. metrics (mAP, CF1/OF1) on a COCO-sized 40,000 x 80 score matrix, on one thread;
4. grid scaling: the same 4-cell grid with ``--workers 1`` and ``--workers 2``;
5. the README main command: wall time and peak memory;
6. on a CUDA GPU: images/s of the suite vs the hand loop, ResNet-50, 224 px, bf16 autocast
   and channels-last, on the synthetic stream (skipped, saying so, without a GPU).

Ratios come from runs side by side in one process or one invocation; absolute figures are
given for reference. ``--quick`` shrinks every row to seconds (used by the tests).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

import methods
from benchmarks.metrics import average_precision, f1_scores
from benchmarks.run import Parser, UsageError, _at_least, _usage_error, check_writable
from benchmarks.runner.store import write_json
from benchmarks import streams
from benchmarks.streams.names import session_splits
from strategies import keyvalue

from .runs import grid_scaling, run_command
from .training import Session, method_costs, step_overhead

ROWS = ("1", "2", "3", "4", "5", "6")
# Per-sample cost targets relative to finetune (issue 5); other methods are measured only.
COST_TARGETS = {"replay": 1.1, "lwf": 1.4, "bsce": 1.1, "gradreweight": 1.5, "rebll": 1.6}
TINY = "digits:B0-C2?train=300&test=150"
TINY_LT = "digits-lt:B0-C2?n_max=60&test_per_class=10"
SIZES = {
    "full": dict(
        overhead=Session("digits:B0-C10", 0, {"epochs": 2}), overhead_repeats=7,
        costs={"multi": Session("digits:B0-C2", 1, {}),
               "single": Session("digits-lt:B0-C2", 1, {})}, cost_repeats=5,
        scores=(40_000, 80), metric_repeats=5,
        grid=["--methods", "finetune", "--streams", "digits:B0-C2", "--seeds", "0,1,2,3"],
        main=["--methods", "replay,lwf"],
        gpu=Session("synthetic:B0-C5?train=5120&size=224", 0,
                    {"backbone": "resnet50", "amp": "bf16", "channels_last": True, "epochs": 2},
                    "cuda"), gpu_repeats=5),
    "quick": dict(
        overhead=Session(TINY, 0, {"epochs": 1}), overhead_repeats=2,
        costs={"multi": Session(TINY, 1, {"epochs": 1}),
               "single": Session(TINY_LT, 1, {"epochs": 1})}, cost_repeats=1,
        scores=(2_000, 80), metric_repeats=2,
        grid=["--methods", "finetune", "--streams", TINY, "--seeds", "0,1,2,3", "--epochs", "1"],
        main=["--methods", "replay,lwf", "--streams", TINY, "--seeds", "0", "--epochs", "1"],
        gpu=Session("synthetic:B0-C5?train=128&test=32&size=32", 0,
                    {"backbone": "resnet18", "amp": "bf16", "channels_last": True, "epochs": 1},
                    "cuda"), gpu_repeats=1),
}


def row(number, name, value, unit, target=None, ok=None, **detail) -> dict:
    return {"row": number, "name": name, "value": value, "unit": unit, "target": target,
            "ok": ok, "detail": detail}


def overhead_rows(size) -> list[dict]:
    got = step_overhead(size["overhead"], size["overhead_repeats"])
    ratio = got.pop("ratio")
    return [row("1", "training step, suite / hand loop (CPU)", ratio, "x", "<= 1.10",
                ratio <= 1.10, **got)]


def cost_rows(size) -> list[dict]:
    rows = []
    for name, got in method_costs(size["costs"], size["cost_repeats"],
                                  size.get("cost_variants")).items():
        target = COST_TARGETS.get(name)
        value = got.pop("ratio", None)
        ok = None if target is None or value is None else value <= target
        rows.append(row("2", f"per-sample cost, {name} / finetune", value, "x",
                        target and f"<= {target}", ok, **got))
    return rows


def metric_rows(size) -> list[dict]:
    n, c = size["scores"]
    gen = torch.Generator().manual_seed(0)
    targets = (torch.rand(n, c, generator=gen) < 0.05).float()
    scores = torch.rand(n, c, generator=gen) + targets * torch.rand(n, c, generator=gen)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ap = _median_seconds(lambda: average_precision(scores, targets), size["metric_repeats"])
        f1 = _median_seconds(lambda: f1_scores(torch.sigmoid(scores), targets),
                             size["metric_repeats"])
    finally:
        torch.set_num_threads(threads)
    return [row("3", f"metrics on {n} x {c} scores, 1 thread", ap + f1, "s", "< 1",
                ap + f1 < 1, map_s=ap, cf1_of1_s=f1)]


def grid_rows(size) -> list[dict]:
    got = grid_scaling(size["grid"], workers=2)
    speedup = got.pop("speedup")
    return [row("4", "grid of 4 cells, --workers 2 speedup over --workers 1", speedup, "x",
                ">= 1.7", speedup >= 1.7, **got)]


def main_command_rows(size) -> list[dict]:
    got = run_command(size["main"])
    return [row("5", "main command, wall time", got["wall_s"], "s", "< 300",
                got["wall_s"] < 300, command=got["command"]),
            row("5", "main command, peak memory", got["peak_mib"], "MiB", "< 2048",
                got["peak_mib"] < 2048, command=got["command"])]


def gpu_rows(size) -> list[dict]:
    name = "GPU training, suite / hand loop (bf16, channels-last)"
    if not torch.cuda.is_available():
        return [row("6", name, None, "x", "<= 1.05", None,
                    skipped="no CUDA device on this machine: GPU row not measured")]
    return [gpu_row(size["gpu"], size["gpu_repeats"], name)]


def gpu_row(session: Session, repeats: int, name: str) -> dict:
    """Row 6 on ``session`` (its device): suite vs hand loop, images/s."""
    got = step_overhead(session, repeats)
    got["device"] = torch.cuda.get_device_name() if session.device == "cuda" else session.device
    ratio = got.pop("ratio")
    return row("6", name, ratio, "x", "<= 1.05", ratio <= 1.05, **got)


MEASURES = {"1": overhead_rows, "2": cost_rows, "3": metric_rows, "4": grid_rows,
            "5": main_command_rows, "6": gpu_rows}


def measure(number: str, size: dict) -> list[dict]:
    """The rows of ``number``; a row that breaks becomes one row saying why."""
    try:
        return MEASURES[number](size)
    except Exception as exc:  # the other rows still get measured
        return [row(number, f"row {number}", None, "", error=f"{type(exc).__name__}: {exc}")]


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in _cpuinfo()
                if line.startswith("model name")), platform.processor() or "unknown")
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "gpu": gpu, "torch": torch.__version__, "python": platform.python_version()}


def _cpuinfo() -> list[str]:
    path = Path("/proc/cpuinfo")
    return path.read_text().splitlines() if path.exists() else []


def table(rows: list[dict]) -> str:
    lines = ["| row | figure | measured | target | met |", "|---|---|---|---|---|"]
    for r in rows:
        if r["value"] is None:
            value = "failed" if "error" in r["detail"] else "skipped"
        else:
            value = f"{r['value']:.3g} {r['unit']}"
        met = {True: "yes", False: "NO", None: "-"}[r["ok"]]
        lines.append(f"| {r['row']} | {r['name']} | {value} | {r['target'] or '-'} | {met} |")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    p = Parser(prog="python -m benchmarks.perf", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes: every row in seconds")
    p.add_argument("--rows", default=",".join(ROWS), help="comma-separated rows (default all)")
    p.add_argument("--out", default="results/perf.json", help="JSON file to write")
    p.add_argument("--methods", help="row 2: the methods to cost (default all), each NAME or "
                   "NAME?key=value&key=value for a variant, e.g. replay,bsce?kd=none")
    p.add_argument("--repeats", type=_at_least(int, 1), help="row 2: interleaved repeats (default 5; 1 "
                   "with --quick)")
    p.add_argument("--stream", help="row 2: cost session 1 of this stream (e.g. digits:B4-C2) "
                   "instead of digits:B0-C2 / digits-lt:B0-C2")
    args = p.parse_args(argv)
    args.methods = args.methods and cost_variants(args.methods)
    args.stream = args.stream and cost_stream(args.stream)
    args.out = json_out(args.out)
    args.rows = selection(args.rows, ROWS, "--rows", "rows")
    return args


def json_out(text: str) -> Path:
    """``--out``: a JSON file in a writable folder (UsageError otherwise)."""
    out = Path(text)
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; give the JSON file to write")
    check_writable(out.parent)
    return out


def selection(text: str, accepted, flag: str, noun: str) -> list[str]:
    """A comma-separated selection among ``accepted`` (UsageError for others or none)."""
    chosen = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in accepted]
    if unknown or not chosen:
        raise UsageError(f"{flag} {','.join(unknown) or 'is empty'}: accepted {noun} are "
                         f"{', '.join(accepted)}")
    return chosen


def cost_variants(text: str) -> dict:
    """``replay,bsce?kd=none`` -> {label: (method, overrides)}, each checked against the
    registry (UsageError otherwise)."""
    variants = {}
    for label in filter(None, (item.strip() for item in text.split(","))):
        name, _, query = label.partition("?")
        try:
            overrides = keyvalue.pairs(query)
        except ValueError:
            raise UsageError(f"--methods {label}: a variant is NAME?key=value&key=value") \
                from None
        try:
            methods.resolve_hparams(name, overrides)
        except methods.MethodError as exc:
            raise UsageError(f"--methods {label}: {exc}") from None
        variants[label] = (name, overrides)
    if not variants:
        raise UsageError("--methods is empty: give method names, e.g. replay,bsce?kd=none")
    return variants


def cost_stream(name: str) -> tuple[str, str]:
    """``name``'s label mode and canonical name, checked (UsageError otherwise): it must have
    a session 1."""
    try:
        dataset, parsed = streams.parse(name)
    except streams.StreamError as exc:
        raise UsageError(f"--stream: {exc}") from None
    if len(session_splits(dataset.num_classes(parsed.options), parsed.base, parsed.inc)) < 2:
        raise UsageError(f"--stream {name}: row 2 costs session 1, and this stream has one "
                         "session; give a protocol with two or more, e.g. digits:B4-C2")
    return dataset.label_mode, streams.canonical(name)


def main(argv=None) -> int:
    try:
        args = parse_args(argv)
    except UsageError as exc:
        return _usage_error(exc)
    size = dict(SIZES["quick" if args.quick else "full"], cost_variants=args.methods)
    if args.repeats:
        size["cost_repeats"] = args.repeats
    if args.stream:
        mode, name = args.stream
        size["costs"] = {mode: replace(size["costs"][mode], stream=name)}
    rows = [r for number in args.rows for r in measure(number, size)]
    report = {"machine": machine(), "quick": args.quick, "rows": rows}
    write_json(args.out, report)
    print(table(rows))
    print(f"machine: {report['machine']}; written to {args.out}", file=sys.stderr)
    for r in rows:
        if "error" in r["detail"]:
            print(f"row {r['row']} failed: {r['detail']['error']}", file=sys.stderr)
    return 1 if any("error" in r["detail"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
