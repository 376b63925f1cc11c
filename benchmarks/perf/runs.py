"""Whole-command figures: ``python -m benchmarks.run`` timed as a user runs it, in a fresh
process each time (imports, stream building, training, evaluation, report)."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_command(args: list[str]) -> dict:
    """Run ``python -m benchmarks.run ARGS --quiet --out TMP``; wall seconds and the peak
    resident memory of that process (MiB). A failing run raises with its last error line."""
    with tempfile.TemporaryDirectory() as tmp:
        argv = [sys.executable, "-m", "benchmarks.run", *args, "--quiet", "--out", f"{tmp}/out"]
        log = Path(tmp) / "stderr.txt"
        with log.open("w") as stderr:
            start = time.perf_counter()
            proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=stderr,
                                    cwd=Path(__file__).resolve().parents[2])
            _, status, usage = os.wait4(proc.pid, 0)  # usage of this child alone
            wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        error = log.read_text().strip()
    if proc.returncode:
        last = error.splitlines()[-1] if error else f"exit status {proc.returncode}"
        raise RuntimeError(f"{' '.join(argv[1:])}: {last}")
    return {"command": "python -m benchmarks.run " + " ".join(args), "wall_s": wall,
            "peak_mib": usage.ru_maxrss / 1024}


def grid_scaling(grid: list[str], workers: int) -> dict:
    """The same grid with one worker (all threads), ``workers`` workers (threads divided),
    and one worker on one thread (what each of the parallel workers gets)."""
    cores = os.cpu_count() or 1
    one = run_command([*grid, "--workers", "1"])
    many = run_command([*grid, "--workers", str(workers)])
    single = run_command([*grid, "--workers", "1", "--threads", str(max(1, cores // workers))])
    return {"speedup": one["wall_s"] / many["wall_s"],
            "speedup_vs_thread_matched": single["wall_s"] / many["wall_s"],
            "workers": workers, "cores": cores, "runs": [one, many, single]}
