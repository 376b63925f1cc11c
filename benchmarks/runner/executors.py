"""Executors: run cells and yield each record as soon as it finishes.

Workers only return records; the driver writes them. ``cell`` is the cell function
``cell(spec, progress=False) -> record`` (default :func:`benchmarks.cell.run_cell`); it must be
importable by name for worker processes, and loads the spec's method plugins itself. Torch
threads are divided between the cells that run at once, unless ``threads`` sets each cell's.
"""
from __future__ import annotations

import functools
import itertools
import logging
import multiprocessing
import os
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Iterator, Optional, Sequence

from .spec import RunSpec, new_record

Cell = Callable[..., dict]


def threads_per_cell(workers: int, threads: Optional[int] = None) -> int:
    """Torch threads for each of ``workers`` cells running at once: ``threads`` when given,
    else the CPU cores divided between them."""
    return threads or max(1, (os.cpu_count() or 1) // workers)


def failed_record(spec: RunSpec, exc: BaseException) -> dict:
    """The record of a cell whose execution raised instead of returning a record."""
    return {**new_record(spec), "error": f"{type(exc).__name__}: {exc}".splitlines()[0],
            "traceback": "".join(traceback.format_exception(exc))}


def run_local(specs: Sequence[RunSpec], *, workers: int = 1, cell: Optional[Cell] = None,
              progress: bool = False, threads: Optional[int] = None) -> Iterator[dict]:
    """Run ``specs`` in a pool of ``workers`` spawned processes, or in this process for one
    worker; ``progress`` asks each cell for per-session progress (bars in this process on a
    terminal, plain lines from worker processes)."""
    cell = cell or _default_cell()
    threads = threads_per_cell(workers, threads)
    if workers == 1:
        _set_threads(threads)
        for spec in specs:
            try:
                yield cell(spec, progress=progress)
            except Exception as exc:
                yield failed_record(spec, exc)
        return
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_set_threads, initargs=(threads,))
    # At most one cell per worker is handed over, so that after Ctrl-C no worker starts another.
    queue, running = iter(specs), {}
    try:
        while True:
            for spec in itertools.islice(queue, workers - len(running)):
                try:
                    running[pool.submit(cell, spec, progress=progress)] = spec
                except BrokenProcessPool as exc:  # a worker died: no cell can run any more
                    for rest in (spec, *queue):
                        yield failed_record(rest, exc)
            if not running:
                return
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                yield _outcome(future.result, running.pop(future))
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def run_ray(specs: Sequence[RunSpec], *, workers: int = 1, address: Optional[str] = None,
            cell: Optional[Cell] = None, threads: Optional[int] = None) -> Iterator[dict]:
    """Run each spec as a Ray task on the cluster at ``address`` (a local instance when None;
    a cluster's nodes need the suite installed).

    A task asks for one GPU when its device is ``cuda`` (or ``auto`` on a cluster with GPUs),
    else for the CPUs of its share of ``workers`` cells at once.
    """
    import ray

    cell = cell or _default_cell()
    threads = threads_per_cell(workers, threads)
    ray.init(address=address, num_cpus=None if address else os.cpu_count(),
             include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        task = ray.remote(_ray_cell)
        has_gpu = ray.cluster_resources().get("GPU", 0) > 0
        refs = {}
        for spec in specs:
            device = spec.train.get("device", "auto")
            wants_gpu = device == "cuda" or (device == "auto" and has_gpu)
            resources = {"num_gpus": 1} if wants_gpu else {"num_cpus": threads}
            refs[task.options(**resources).remote(cell, spec, threads)] = spec
        waiting = list(refs)
        while waiting:
            (ref,), waiting = ray.wait(waiting, num_returns=1)
            yield _outcome(functools.partial(ray.get, ref), refs[ref])
    finally:
        ray.shutdown()


def _outcome(result: Callable[[], dict], spec: RunSpec) -> dict:
    """The record a finished task returned, or a failed record if the task raised."""
    try:
        return result()
    except Exception as exc:  # a worker that died or a cell that broke its contract
        # A broken pool raises one exception object for every pending cell: drop the frames
        # each raise adds (the worker's own traceback stays in the exception's cause).
        return failed_record(spec, exc.with_traceback(None))


def _ray_cell(cell: Cell, spec: RunSpec, threads: int) -> dict:
    _set_threads(threads)
    return cell(spec)


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _default_cell() -> Cell:
    from benchmarks.cell import run_cell

    return run_cell
