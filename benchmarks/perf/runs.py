"""Whole-command figures: ``python -m benchmarks.run`` timed as a user runs it, in a fresh
process each time (imports, stream building, training, evaluation, report)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path


# Runs a command and writes the peak resident memory of its largest process (KiB). A small
# process of its own, so that the peak is not inflated by the harness's memory at fork time.
PEAK_WRAPPER = ("import resource, subprocess, sys; code = subprocess.call(sys.argv[2:]); "
                "open(sys.argv[1], 'w').write(str(resource.getrusage("
                "resource.RUSAGE_CHILDREN).ru_maxrss)); sys.exit(code)")


def run_command(args: list[str], out: Path | None = None,
                timeout: float | None = None) -> dict:
    """Run ``python -m benchmarks.run ARGS --quiet --out OUT`` (OUT: ``out``, else a temporary
    folder); wall seconds and the peak resident memory of its largest process (MiB). A
    failing run raises with its last error line; one still running after ``timeout`` seconds
    is stopped as Ctrl-C stops it (its finished cells kept in ``out``) and raises
    TimeoutError."""
    with tempfile.TemporaryDirectory() as tmp:
        peak, log = Path(tmp) / "peak.txt", Path(tmp) / "stderr.txt"
        command = [sys.executable, "-m", "benchmarks.run", *args, "--quiet", "--out",
                   str(out or f"{tmp}/out")]
        with log.open("w") as stderr:
            start = time.perf_counter()
            process = subprocess.Popen([sys.executable, "-c", PEAK_WRAPPER, str(peak), *command],
                                       stdout=subprocess.DEVNULL, stderr=stderr,
                                       cwd=Path(__file__).resolve().parents[2],
                                       start_new_session=True)
            try:
                code = process.wait(timeout)
            except subprocess.TimeoutExpired:
                _stop(process)
                raise TimeoutError(f"{' '.join(command[1:])}: stopped after {timeout:.0f} s")
            wall = time.perf_counter() - start
        if code:
            lines = log.read_text().strip().splitlines()
            raise RuntimeError(f"{' '.join(command[1:])}: "
                               f"{lines[-1] if lines else f'exit status {code}'}")
        peak_mib = int(peak.read_text()) / 1024
    return {"command": "python -m benchmarks.run " + " ".join(args), "wall_s": wall,
            "peak_mib": peak_mib}


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the command's process group (the run CLI saves its finished cells), then
    SIGKILL if it has not ended within 30 s."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def grid_scaling(grid: list[str], workers: int) -> dict:
    """The same grid with one worker (all threads), ``workers`` workers (threads divided),
    and one worker with a parallel worker's share of threads. ``thread_scaling`` (how much
    faster one worker gets from all threads) bounds the speedup: about
    ``workers / thread_scaling`` when threads scale well."""
    cores = os.cpu_count() or 1
    one = run_command([*grid, "--workers", "1"])
    many = run_command([*grid, "--workers", str(workers)])
    single = run_command([*grid, "--workers", "1", "--threads", str(max(1, cores // workers))])
    return {"speedup": one["wall_s"] / many["wall_s"],
            "speedup_vs_thread_matched": single["wall_s"] / many["wall_s"],
            "thread_scaling": single["wall_s"] / one["wall_s"],
            "workers": workers, "cores": cores, "runs": [one, many, single]}
