"""The GPU check: ``python -m benchmarks.perf.gpu [--dry-run] [--out FILE] [--steps 1,3]
[--budget SECONDS]``, one command for the day a GPU is lent (docs/gpu.md says how to run it).

Writes one JSON file (default ``results/gpu/gpu.json``, rewritten after every step, so that a
run stopped midway keeps what it measured) with the device and every figure:

1. environment: GPU name, memory, driver, CUDA, torch and the other versions;
2. the suite's training step against a hand-written loop (ResNet-50, 224 px, bf16 autocast,
   channels-last, batch 64, synthetic stream): steady-state images/s of both and the ratio of
   their step times (target <= 1.05); above it, a torch.profiler summary (top ops, syncs);
3. a grid of rebll, gradreweight, replay and psd on a COCO-sized synthetic stream (80 classes,
   B40-C10, 224 px, 1 epoch) through the suite's runner with ``--amp bf16``: wall time, images/s
   and peak GPU memory per cell, and whether every cell finished;
4. determinism: the same cell run twice, as it is and under torch's deterministic algorithms:
   identical, or the spread;
5. fp16 with the gradient scaler against bf16 on one cell: both finish, numbers close;
6. the embedded reference on the GPU: the README's main command and one digits stream, wall
   time against the CPU figures stored in the README.

Each step records its own error and the others still run; a step that would start after the
time budget is spent is skipped, saying so. ``--dry-run`` runs every step on the CPU at tiny
sizes, in seconds (what the tests run). Exit status: 0 every step done, 1 some step failed or
was skipped, 2 bad input.
"""
from __future__ import annotations

import contextlib
import io
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.perf.__main__ import json_out, selection
from benchmarks.run import Parser, UsageError, _at_least, _usage_error

STEPS = {"1": "environment", "2": "training step", "3": "grid", "4": "determinism",
         "5": "fp16 vs bf16", "6": "embedded reference"}
STEP_TARGET = 1.05  # suite step time / hand-loop step time (issue 34)
GRID_METHODS = ("rebll", "gradreweight", "replay", "psd")
# fp16 and bf16 runs of one cell count as close when their mAPs (percent) differ by at most
# this: a judgement, below the seed-to-seed spread of a cell (std 0.7-3 mAP on the digits
# streams, README "Reference leaderboard"), so that a real fp16 failure (overflow, NaN) shows.
FP16_TOLERANCE = 2.0

# The CPU figures the GPU is compared with, and where they come from.
# README "Set up, run, test": `python -m benchmarks.run --methods replay,lwf` (digits:B0-C2,
# seeds 0-2), 85 s wall on the project's 2-core VM, quiet, commit 9450f89, 2026-12-01.
CPU_MAIN_COMMAND_S = 85.0
# README "Reference leaderboard", digits:B4-C2: mean wall seconds of a cell over 5 seeds, 2
# threads per cell, 2-core Intel Xeon VM, commit 4e8386e (wall_time_s_mean in
# results/reference-leaderboard/leaderboard.csv).
DIGITS_STREAM = "digits:B4-C2"
CPU_DIGITS_S_PER_CELL = {"replay": 11.4, "psd": 131.3}


@dataclass(frozen=True)
class Sizes:
    """What each step runs: the full check for an H200 (about 6 minutes of work), or the
    dry run's tiny CPU sizes."""

    device: str
    step_stream: str            # step 2: session 0 of it, all its images in one session
    step_train: dict            # step 2: recipe overrides
    step_repeats: int           # step 2: interleaved suite / hand-loop pairs
    step_skip: int              # step 2: iterations of each session left untimed
    grid_stream: str            # step 3
    grid_flags: tuple           # step 3: more benchmarks.run flags
    cell_stream: str            # steps 4 and 5: one replay cell
    run_flags: tuple            # benchmarks.run flags shared by steps 3-5 (beside amp, device)
    num_workers: int | None     # steps 3-5: loader workers per cell (None: the recipe's)
    main_command: tuple         # step 6: the README's main command
    digits_command: tuple       # step 6: one digits stream


SIZES = {
    "full": Sizes(
        device="cuda",
        step_stream="synthetic:B0-C5?classes=5&train=4096&test=64&size=224",
        step_train={"backbone": "resnet50", "amp": "bf16", "channels_last": True,
                    "epochs": 1, "batch_size": 64},
        step_repeats=5, step_skip=8,
        grid_stream="synthetic:B40-C10?classes=80&train=2500&test=500&size=224", grid_flags=(),
        cell_stream="synthetic:B40-C10?classes=80&train=1000&test=250&size=224",
        run_flags=("--seeds", "0", "--epochs", "1", "--channels-last"), num_workers=None,
        main_command=("--methods", "replay,lwf"),
        digits_command=("--methods", ",".join(CPU_DIGITS_S_PER_CELL), "--streams",
                        DIGITS_STREAM, "--seeds", "0")),
    "dry": Sizes(
        device="cpu",
        step_stream="synthetic:B0-C5?classes=5&train=96&test=16&size=16",
        step_train={"backbone": "smallcnn", "amp": "bf16", "channels_last": True,
                    "epochs": 1, "batch_size": 16, "num_workers": 0},
        step_repeats=1, step_skip=2,
        grid_stream="synthetic:B4-C2?classes=8&train=32&test=16&size=8",
        grid_flags=("--set", "psd.clusters=1"),
        cell_stream="synthetic:B4-C4?classes=8&train=24&test=16&size=8",
        run_flags=("--seeds", "0", "--epochs", "1", "--channels-last", "--backbone",
                   "smallcnn", "--batch-size", "16"), num_workers=0,
        main_command=("--methods", "replay,lwf", "--streams", "digits:B0-C2?train=100&test=50",
                      "--seeds", "0", "--epochs", "1"),
        digits_command=("--methods", ",".join(CPU_DIGITS_S_PER_CELL), "--streams",
                        f"{DIGITS_STREAM}?train=100&test=50", "--seeds", "0", "--epochs", "1",
                        "--set", "psd.clusters=1")),
}


class Check:
    """One run of the check: its sizes, its deadline, and the cells' peak GPU memory."""

    def __init__(self, sizes: Sizes, budget_s: float, dry_run: bool):
        self.sizes, self.dry_run = sizes, dry_run
        self.deadline = time.monotonic() + budget_s
        self.peak_mib: dict[str, float] = {}

    def left(self) -> float:
        return self.deadline - time.monotonic()

    # -- the suite's runner, in this process ------------------------------------------------
    def cell(self, spec, progress: bool = False) -> dict:
        """``run_cell`` with the cell's peak GPU memory noted; a cell that would start after
        the budget is spent is recorded as failed without running."""
        import torch

        from benchmarks.cell import run_cell
        from benchmarks.runner.spec import new_record

        if self.left() <= 0:
            return {**new_record(spec), "error": "not run: the check's time budget was spent"}
        if self.sizes.num_workers is not None:  # not part of the cell's identity
            spec = replace(spec, train={**spec.train, "num_workers": self.sizes.num_workers})
        cuda = torch.device(spec.train.get("device", "cpu")).type == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        record = run_cell(spec, progress)
        if cuda:
            self.peak_mib[spec.id] = torch.cuda.max_memory_allocated() / 2**20
        return record

    def run_grid(self, args: list[str]) -> tuple[int, list[dict], float]:
        """``python -m benchmarks.run ARGS`` in this process (one worker, so cells run here)
        into a temporary folder; exit status, the records in grid order, wall seconds."""
        from benchmarks import run
        from benchmarks.runner.store import Store

        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                code = run.main([*args, *self.device_flags(), "--workers", "1", "--quiet",
                                 "--out", out], cell=self.cell)
            wall = time.perf_counter() - start
            records = sorted(Store(out).load_all().values(),
                             key=lambda r: args_order(args, r["spec"]["method"]))
        return code, records, wall

    def device_flags(self) -> list[str]:
        """``--device`` and ``--threads``: this process's torch threads (all cores unless
        OMP_NUM_THREADS says otherwise, as in a plain ``benchmarks.run``)."""
        import torch

        return ["--device", self.sizes.device, "--threads", str(torch.get_num_threads())]

    def one_cell(self, method: str, amp: str) -> dict:
        """The record of ``method`` on the steps' one-cell stream, seed 0, through the runner."""
        code, records, _ = self.run_grid(["--methods", method, "--streams",
                                          self.sizes.cell_stream, "--amp", amp,
                                          *self.sizes.run_flags])
        if not records:
            raise RuntimeError(f"benchmarks.run exited {code} without a record")
        return records[0]

    # -- the figures of one cell -----------------------------------------------------------
    def figures(self, record: dict) -> dict:
        """Wall and training seconds, training images/s, peak GPU memory, the summary."""
        spec = record["spec"]
        got = {"method": spec["method"], "status": record["status"], "error": record["error"],
               "wall_s": record["wall_time_s"],
               "peak_gpu_mib": self.peak_mib.get(record["id"])}
        if record["status"] == "done":
            train_s = sum(s["train_time_s"] for s in record["sessions"])
            images = train_images(spec["stream"]) * record["train"]["epochs"]
            got.update(train_s=train_s, eval_s=sum(s["eval_time_s"] for s in record["sessions"]),
                       train_images=images, train_images_per_s=images / train_s,
                       summary=record["summary"])
        return got


def args_order(args: list[str], method: str) -> int:
    methods = args[args.index("--methods") + 1].split(",")
    return methods.index(method) if method in methods else len(methods)


def train_images(stream: str) -> int:
    """Training images over all sessions of ``stream`` (an image in two sessions counts
    twice; replayed memory is not counted)."""
    from benchmarks import streams

    return sum(len(exp.dataset) for exp in streams.build(stream).benchmark.train_stream)


# -- the steps ------------------------------------------------------------------------------
def environment(check: Check) -> dict:
    """The machine: GPU, driver, CUDA and library versions (on the CPU in a dry run)."""
    import avalanche
    import torch
    import torchvision

    from benchmarks.perf.__main__ import machine
    from benchmarks.runner.version import code_version

    got = {**machine(), "torchvision": torchvision.__version__,
           "avalanche": avalanche.__version__, "torch_cuda": torch.version.cuda,
           "code_version": code_version(), "platform": platform.platform()}
    if check.dry_run:
        got["note"] = "dry run on the CPU: no GPU figures"
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        got.update(gpu=props.name, gpu_memory_gib=props.total_memory / 2**30,
                   capability=f"{props.major}.{props.minor}",
                   multiprocessors=props.multi_processor_count,
                   cudnn=torch.backends.cudnn.version(), driver=nvidia_smi("driver_version"))
    return got


def nvidia_smi(field: str):
    """One ``nvidia-smi --query-gpu`` field of GPU 0, or None without nvidia-smi."""
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={field}", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.strip().splitlines()[0] if out.strip() else None


def training_step(check: Check) -> dict:
    """The suite's ``finetune`` against the hand loop (benchmarks/perf/training.py), steady
    state; a profile of one suite session when the ratio misses the target (always in a dry
    run, so that its code runs)."""
    from benchmarks.perf.training import Session, step_overhead

    sizes = check.sizes
    session = Session(sizes.step_stream, 0, sizes.step_train, sizes.device)
    got = step_overhead(session, sizes.step_repeats, skip=sizes.step_skip)
    got["target"] = f"<= {STEP_TARGET}"
    got["met"] = got["ratio"] <= STEP_TARGET
    if not got["met"] or check.dry_run:
        got["profile"] = profile_session(session)
    return got


# Profiler events of CUDA runtime calls that make the CPU wait for the GPU, and of ops that
# read a tensor's value on the host (a wait when the tensor is on the GPU; Adam's step
# counters, for one, are CPU tensors read once per parameter and step).
SYNC_CALLS = ("cudaDeviceSynchronize", "cudaStreamSynchronize", "cudaEventSynchronize",
              "cudaMemcpy")
HOST_READS = ("aten::item", "aten::_local_scalar_dense", "aten::nonzero")


def profile_session(session, top: int = 12) -> dict:
    """One suite session under torch.profiler: the ops with the most self time on the
    device (on the CPU without one), and the calls that synchronise the CPU with the GPU."""
    from torch.profiler import ProfilerActivity, profile

    from benchmarks.perf.training import suite_seconds

    built, train = session.build()
    cuda = train["device"] == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        seconds = suite_seconds(built, train, session.session)
    events = prof.key_averages()

    def device_us(e):
        return getattr(e, "self_device_time_total", getattr(e, "self_cuda_time_total", 0))

    key = device_us if cuda else (lambda e: e.self_cpu_time_total)
    ops = sorted(events, key=key, reverse=True)[:top]
    return {"session_s": seconds, "sorted_by": "self device time" if cuda else "self CPU time",
            "top_ops": [{"name": e.key, "calls": e.count,
                         "self_cpu_ms": e.self_cpu_time_total / 1e3,
                         "self_device_ms": device_us(e) / 1e3} for e in ops],
            "syncs": {e.key: e.count for e in events if e.key in SYNC_CALLS},
            "host_reads": {e.key: e.count for e in events if e.key in HOST_READS},
            "iterations": math.ceil(len(built.benchmark.train_stream[session.session].dataset)
                                    / train["batch_size"]) * train["epochs"]}


def grid(check: Check) -> dict:
    """rebll, gradreweight, replay and psd on the COCO-sized stream with bf16."""
    sizes = check.sizes
    code, records, wall = check.run_grid(["--methods", ",".join(GRID_METHODS), "--streams",
                                          sizes.grid_stream, "--amp", "bf16",
                                          *sizes.run_flags, *sizes.grid_flags])
    cells = [check.figures(r) for r in records]
    by_method = {c["method"]: c for c in cells}
    got = {"stream": sizes.grid_stream, "exit_status": code, "wall_s": wall, "cells": cells,
           "all_done": len(cells) == len(GRID_METHODS)
           and all(c["status"] == "done" for c in cells)}
    psd, replay = by_method.get("psd", {}), by_method.get("replay", {})
    if "train_s" in psd and "train_s" in replay:
        got["psd_over_replay"] = {"wall": psd["wall_s"] / replay["wall_s"],
                                  "train": psd["train_s"] / replay["train_s"]}
    if not got["all_done"]:
        raise StepFailed(got, "not every cell finished: " + "; ".join(
            f"{c['method']}: {c['error']}" for c in cells if c["status"] != "done"))
    return got


def determinism(check: Check) -> dict:
    """One replay cell twice as it runs by default, and twice under
    ``torch.use_deterministic_algorithms(True, warn_only=True)`` (ops without a deterministic
    kernel warn and are listed)."""
    import torch

    runs = {"default": [check.one_cell("replay", "bf16") for _ in range(2)]}
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            runs["deterministic"] = [check.one_cell("replay", "bf16") for _ in range(2)]
    finally:
        torch.use_deterministic_algorithms(before)
    got = {"stream": check.sizes.cell_stream, "method": "replay",
           "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
           "nondeterministic_ops": sorted({str(w.message).splitlines()[0] for w in caught
                                           if "deterministic" in str(w.message)})}
    for mode, (a, b) in runs.items():
        failed = [r["error"] for r in (a, b) if r["status"] != "done"]
        if failed:
            raise StepFailed(got, f"{mode} run failed: {failed[0]}")
        got[mode] = spread(a, b)
        got[mode]["wall_s"] = [a["wall_time_s"], b["wall_time_s"]]
    return got


def spread(a: dict, b: dict) -> dict:
    """Whether two records of one cell hold the same numbers, and the largest difference
    (metrics and per-class values after each session, training losses, summary)."""
    x, y = numbers(a), numbers(b)
    if x.keys() != y.keys():
        return {"identical": False, "max_abs_diff": None,
                "differs_in": sorted(x.keys() ^ y.keys())[:5]}
    diffs = {k: abs(x[k] - y[k]) for k in x if x[k] != y[k]}
    worst = max(diffs, key=diffs.get) if diffs else None
    return {"identical": not diffs, "values": len(x), "values_differing": len(diffs),
            "max_abs_diff": diffs.get(worst, 0.0), "max_abs_diff_at": worst,
            "last_mAP": [a["summary"]["last_mAP"], b["summary"]["last_mAP"]]}


def numbers(record: dict) -> dict:
    """The record's numbers by path: each session's metrics, per-class values and training
    losses, and the summary (timings left out)."""
    out = {}

    def walk(path, value):
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{path}.{k}", v)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(f"{path}[{i}]", v)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[path] = float(value)

    for s in record["sessions"]:
        for part in ("metrics", "per_class", "train_loss"):
            walk(f"session{s['session']}.{part}", s[part])
    walk("summary", record["summary"])
    return out


def fp16_vs_bf16(check: Check) -> dict:
    """The one-cell replay run with ``--amp fp16`` (gradient scaler) and ``--amp bf16``."""
    runs = {amp: check.one_cell("replay", amp) for amp in ("bf16", "fp16")}
    got = {"stream": check.sizes.cell_stream, "method": "replay",
           "tolerance_mAP": FP16_TOLERANCE,
           **{amp: check.figures(r) for amp, r in runs.items()}}
    failed = [f"{amp}: {r['error']}" for amp, r in runs.items() if r["status"] != "done"]
    if failed:
        raise StepFailed(got, "; ".join(failed))
    keys = ("avg_mAP", "last_mAP", "last_CF1", "last_OF1")
    got["diff"] = {k: runs["fp16"]["summary"][k] - runs["bf16"]["summary"][k] for k in keys}
    got["close"] = all(abs(got["diff"][k]) <= FP16_TOLERANCE for k in ("avg_mAP", "last_mAP"))
    return got


def reference(check: Check) -> dict:
    """The README's main command and one digits stream, each a fresh process as a user runs
    it, against the CPU figures above."""
    from benchmarks.perf.runs import run_command
    from benchmarks.runner.store import Store

    device = check.device_flags()
    main = run_command([*check.sizes.main_command, *device], timeout=max(check.left(), 1))
    got = {"main_command": {**main, "cpu_wall_s": CPU_MAIN_COMMAND_S,
                            "cpu_over_gpu": CPU_MAIN_COMMAND_S / main["wall_s"]}}
    with tempfile.TemporaryDirectory() as out:
        digits = run_command([*check.sizes.digits_command, *device], Path(out),
                             timeout=max(check.left(), 1))
        cells = {r["spec"]["method"]: r for r in Store(out).load_all().values()}
    got["digits"] = {**digits, "cells": {
        method: {"wall_s": r["wall_time_s"], "cpu_wall_s": CPU_DIGITS_S_PER_CELL[method],
                 "cpu_over_gpu": CPU_DIGITS_S_PER_CELL[method] / r["wall_time_s"],
                 "last_mAP": r["summary"]["last_mAP"]}
        for method, r in cells.items()}}
    return got


class StepFailed(Exception):
    """A step that measured something but missed what it checks: ``got`` is kept."""

    def __init__(self, got: dict, message: str):
        super().__init__(message)
        self.got = got


MEASURES = {"1": environment, "2": training_step, "3": grid, "4": determinism,
            "5": fp16_vs_bf16, "6": reference}


def measure(number: str, check: Check) -> dict:
    """Step ``number``'s figures with its status: done, failed (with the error) or skipped
    (the budget was spent before it started)."""
    head = {"step": number, "name": STEPS[number]}
    if check.left() <= 0:
        return {**head, "status": "skipped", "error": "the check's time budget was spent",
                "seconds": 0.0}
    start = time.perf_counter()
    try:
        got, status, error = MEASURES[number](check), "done", None
    except StepFailed as exc:
        got, status, error = exc.got, "failed", str(exc)
    except Exception as exc:  # the other steps still run
        got, status, error = {}, "failed", f"{type(exc).__name__}: {exc}".splitlines()[0]
    return {**head, "status": status, "error": error,
            "seconds": time.perf_counter() - start, **got}


def parse_args(argv=None):
    p = Parser(prog="python -m benchmarks.perf.gpu", description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true",
                   help="every step on the CPU at tiny sizes, in seconds (what the tests run)")
    p.add_argument("--steps", default=",".join(STEPS),
                   help="comma-separated steps (default all): " + ", ".join(
                       f"{n} {name}" for n, name in STEPS.items()))
    p.add_argument("--budget", type=_at_least(float, 0, strict=True), metavar="SECONDS",
                   help="no step starts after this many seconds (default 480; 300 with "
                        "--dry-run); a running grid runs no further cell")
    p.add_argument("--out", default="results/gpu/gpu.json", help="JSON file to write")
    args = p.parse_args(argv)
    args.steps = selection(args.steps, STEPS, "--steps", "steps")
    args.out = json_out(args.out)
    if args.budget is None:
        args.budget = 300.0 if args.dry_run else 480.0
    return args


def main(argv=None) -> int:
    try:
        args = parse_args(argv)
    except UsageError as exc:
        return _usage_error(exc)
    import torch

    if not args.dry_run and not torch.cuda.is_available():
        print("error: no CUDA device here; run with --dry-run to try the check on the CPU",
              file=sys.stderr)
        return 2
    from benchmarks.runner.store import write_json

    # cuBLAS is deterministic only with a fixed workspace (step 4); read at its first use.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    sizes = SIZES["dry" if args.dry_run else "full"]
    check = Check(sizes, args.budget, args.dry_run)
    report = {"device": sizes.device, "dry_run": args.dry_run, "budget_s": args.budget,
              "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "command": "python -m benchmarks.perf.gpu " + " ".join(argv or sys.argv[1:]),
              "steps": []}
    start = time.perf_counter()
    for number in args.steps:
        print(f"step {number} ({STEPS[number]}) ...", file=sys.stderr, flush=True)
        step = measure(number, check)
        report["steps"].append(step)
        if number == "1" and step["status"] == "done":
            report["device"] = step.get("gpu") or f"{sizes.device} ({step['cpu']})"
        report["elapsed_s"] = time.perf_counter() - start
        write_json(args.out, report)
        print(f"step {number}: {step['status']}"
              + (f" ({step['error']})" if step["error"] else "")
              + f", {step.get('seconds', 0):.1f} s", file=sys.stderr, flush=True)
    print(f"written to {args.out}", file=sys.stderr)
    return 0 if all(s["status"] == "done" for s in report["steps"]) else 1


if __name__ == "__main__":
    sys.exit(main())
