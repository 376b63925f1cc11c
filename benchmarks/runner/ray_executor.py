"""The Ray executor: each cell a Ray task, on a local instance or on a cluster.

Before any cell runs, :func:`cluster_nodes` asks the cluster for its nodes from a child
process that is killed after ``timeout`` seconds, and :func:`check_fits` compares what a cell
asks for with the largest node: a wrong address, a rejected authentication token or a request
no node can ever meet is one :class:`ClusterError`, not a hang. Each task records where it ran
(``record["ray"]``: node id, IP, hostname, attempts) and the code version computed on that
node; a cell whose node ran other code than the driver is a failed record. A cell whose worker
or node died is resubmitted by the driver up to ``retries`` times (Ray's own retries are off,
so that the attempts are counted); a cell that raised is not retried.

    python -m benchmarks.runner.ray_executor HOST:PORT   # each node: CPUs, GPUs, code version
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Iterator, Optional, Sequence

from .executors import Cell, _default_cell, _set_threads, failed_record, threads_per_cell
from .spec import RunSpec
from .version import cell_version, code_version, method_source

MODULE = "benchmarks.runner.ray_executor"  # __name__ is __main__ when run with -m
# Ray's log line when the cluster refuses this driver's token (it then retries for ~20 s).
AUTH_REFUSED = ("InvalidAuthToken", "Unauthenticated")
TOKEN_HELP = ("the cluster's token in RAY_AUTH_TOKEN, or in the file named by "
              "RAY_AUTH_TOKEN_PATH (default ~/.ray/auth_token); `ray get-auth-token` on the "
              "head node prints it")
# "[2026-01-01 10:00:00,000 W 123 123] gcs_client.cc:210: " before a message of Ray's core.
RAY_LOG_PREFIX = re.compile(r"^\[[^]]*\] \S+:\d+: ")
NO_TOKEN = 3  # exit status of ``--json`` when RAY_AUTH_MODE=token but no token is found


class ClusterError(Exception):
    """The Ray cluster cannot run the grid as asked: reported as one line, exit status 2."""


def cluster_nodes(address: Optional[str], timeout: float) -> list[dict]:
    """The alive nodes (``node_id ip hostname CPU GPU``) of the cluster at ``address``, or of
    the local instance :func:`run_ray` starts when ``address`` is None (this machine).

    Raises ClusterError when no cluster answers within ``timeout`` seconds or the cluster
    refuses this driver's authentication token.
    """
    if address is None:
        import torch

        return [{"node_id": None, "ip": "this machine", "hostname": socket.gethostname(),
                 "CPU": os.cpu_count() or 1, "GPU": torch.cuda.device_count()}]
    returncode, out, log = _ask_for_nodes(address, timeout)
    if any(mark in line for line in log for mark in AUTH_REFUSED):
        mode = os.environ.get("RAY_AUTH_MODE", "")
        if mode.lower() != "token":
            raise ClusterError(f"the Ray cluster at {address} requires token authentication: "
                               f"set RAY_AUTH_MODE=token (it is {mode or 'unset'}) and give "
                               f"{TOKEN_HELP}")
        raise ClusterError(f"the Ray cluster at {address} refused this driver's "
                           f"authentication token; give {TOKEN_HELP}")
    if returncode == 0:
        return json.loads(out)
    if returncode == NO_TOKEN:
        raise ClusterError(f"RAY_AUTH_MODE=token but this driver has no token: give {TOKEN_HELP}")
    reasons = [RAY_LOG_PREFIX.sub("", line) for line in log
               if line and not line.startswith(("Traceback", " "))]
    reason = reasons[-1] if reasons else "Ray said nothing yet"
    if returncode < 0:  # killed at the deadline
        raise ClusterError(f"no Ray cluster answered at {address} within {timeout:g} s "
                           f"(--ray-timeout): {reason}")
    raise ClusterError(f"cannot connect to the Ray cluster at {address}: {reason}")


def _ask_for_nodes(address: str, timeout: float) -> tuple[int, str, list[str]]:
    """Run ``python -m MODULE --json address`` for at most ``timeout`` seconds, and less when
    Ray logs that the cluster refused the token: its exit status (negative when killed),
    output and log lines."""
    with tempfile.TemporaryFile("w+") as out:
        child = subprocess.Popen([sys.executable, "-m", MODULE, "--json", address],
                                 stdout=out, stderr=subprocess.PIPE, text=True)
        log, refused = [], threading.Event()

        def read_log():
            for line in child.stderr:
                log.append(line.strip())
                if any(mark in line for mark in AUTH_REFUSED):
                    refused.set()

        reader = threading.Thread(target=read_log, daemon=True)
        reader.start()
        deadline = time.monotonic() + timeout
        while child.poll() is None and not refused.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        if child.poll() is None:
            child.kill()
        child.wait()
        reader.join()
        out.seek(0)
        return child.returncode, out.read(), log


def task_resources(spec: RunSpec, threads: int, has_gpu: bool) -> dict:
    """What one cell's task asks Ray for: one GPU (and one CPU) when its device is ``cuda``, or
    ``auto`` on a cluster with GPUs; else ``threads`` CPUs."""
    device = spec.train.get("device", "auto")
    if device == "cuda" or (device == "auto" and has_gpu):
        return {"num_cpus": 1, "num_gpus": 1}
    return {"num_cpus": threads, "num_gpus": 0}


def check_fits(specs: Sequence[RunSpec], nodes: list[dict], workers: int,
               threads: Optional[int], address: Optional[str] = None) -> None:
    """Raise ClusterError when some cell asks for more CPUs or GPUs than any node has (its
    task could never be scheduled: Ray would wait forever)."""
    has_gpu = any(node["GPU"] for node in nodes)
    per_cell = threads_per_cell(workers, threads)
    asks = {tuple(task_resources(spec, per_cell, has_gpu).items()): spec for spec in specs}
    for ask, spec in asks.items():
        cpus, gpus = dict(ask)["num_cpus"], dict(ask)["num_gpus"]
        if any(node["CPU"] >= cpus and node["GPU"] >= gpus for node in nodes):
            continue
        largest = max(nodes, key=lambda node: (node["GPU"], node["CPU"]) if gpus else
                      (node["CPU"], node["GPU"]))
        where = f"the Ray cluster at {address}" if address else "the local Ray instance"
        if gpus:
            why, fix = "--device cuda", "use --device cpu or add a node with a GPU"
        elif threads:
            why, fix = f"--threads {threads}", f"use --threads {int(largest['CPU'])} or less"
        else:
            why = f"this machine's {os.cpu_count()} cores / --workers {workers}"
            fix = f"set --threads {int(largest['CPU'])} or less"
        raise ClusterError(
            f"{spec.method} on {spec.stream} asks Ray for {cpus:g} CPUs and {gpus:g} GPUs per "
            f"cell ({why}), but the largest node of {where} ({largest['ip']}) has "
            f"{largest['CPU']:g} CPUs and {largest['GPU']:g} GPUs; {fix}")


# A task whose worker process or node died is resubmitted; one whose cell raised is not.
def _retried_errors() -> tuple:
    from ray import exceptions as e

    return (e.WorkerCrashedError, e.NodeDiedError, e.LocalRayletDiedError,
            e.OutOfMemoryError, e.ObjectLostError)


def run_ray(specs: Sequence[RunSpec], *, workers: int = 1, address: Optional[str] = None,
            cell: Optional[Cell] = None, threads: Optional[int] = None, retries: int = 3,
            version: Optional[str] = None) -> Iterator[dict]:
    """Run each spec as a Ray task on the cluster at ``address`` (a local instance when None;
    a cluster's nodes need the suite installed) and yield each record as it finishes.

    A record whose node computed another code version than ``version`` (the driver's) is
    failed. Ray's warnings (e.g. a task that no node can take) are shown on the driver.
    """
    import ray

    cell = cell or _default_cell()
    threads = threads_per_cell(workers, threads)
    local = {} if address else {"num_cpus": os.cpu_count(), "include_dashboard": False}
    ray.init(address=address, log_to_driver=True, logging_level=logging.ERROR, **local)
    try:
        has_gpu = ray.cluster_resources().get("GPU", 0) > 0
        task = ray.remote(max_retries=0)(_ray_cell)
        retried = _retried_errors()

        def submit(spec):
            return task.options(**task_resources(spec, threads, has_gpu)).remote(
                cell, spec, threads)

        pending = {submit(spec): (spec, 1, []) for spec in specs}
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            spec, attempt, crashes = pending.pop(ref)
            try:
                record = ray.get(ref)
            except retried as exc:
                crashes = [*crashes, _first_line(exc)]
                if attempt <= retries:
                    pending[submit(spec)] = (spec, attempt + 1, crashes)
                    continue
                record = failed_record(spec, exc.with_traceback(None))
            except Exception as exc:  # a cell that broke its contract (returned no record)
                record = failed_record(spec, exc.with_traceback(None))
            yield _provenance(record, version and cell_version(version, method_source(
                spec.method)), attempt, crashes)
    finally:
        ray.shutdown()


def _provenance(record: dict, version: Optional[str], attempts: int, crashes: list) -> dict:
    """``record`` with its attempts (and the errors of those that crashed) under ``ray``; a
    done record whose node computed another code version than ``version`` (the driver's)
    is failed."""
    ran = record.setdefault("ray", {})
    ran.update(attempts=attempts, crashes=crashes)
    node_version = record.get("code_version")
    if record["status"] == "done" and version and node_version and node_version != version:
        record.update(status="failed", error=(
            f"code version mismatch: node {ran.get('hostname')} ({ran.get('node_ip')}) ran "
            f"{node_version}, the driver has {version}; install the driver's code on every "
            "node (docs/ray.md)"))
    return record


def _ray_cell(cell: Cell, spec: RunSpec, threads: int) -> dict:
    """A task: run one cell; add where it ran and the code version of this node (the suite's
    and, for a plugin method, its file as the cell loaded it)."""
    import ray

    where = {"hostname": socket.gethostname(), "node_ip": ray.util.get_node_ip_address(),
             "node_id": ray.get_runtime_context().get_node_id()}
    _set_threads(threads)
    try:
        record = cell(spec)
    except Exception as exc:
        record = failed_record(spec, exc)
    version = cell_version(code_version(), method_source(spec.method))
    return {**record, "code_version": version, "ray": where}


def _first_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


def _node_version() -> dict:
    """A task pinned to one node: its hostname and code version."""
    return {"hostname": socket.gethostname(), "code_version": code_version()}


def main(argv=None) -> int:
    """List the cluster's alive nodes: as JSON (``--json``, what :func:`cluster_nodes` reads),
    or as a table with each node's code version against this machine's."""
    p = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=main.__doc__)
    p.add_argument("address", help="HOST:PORT of the cluster's head node")
    p.add_argument("--json", action="store_true", help="nodes as JSON, without versions")
    p.add_argument("--timeout", type=float, default=30.0,
                   help="seconds to wait for the cluster (default 30)")
    args = p.parse_args(argv)
    import ray

    if args.json:
        try:
            ray.init(address=args.address, log_to_driver=False, logging_level=logging.ERROR)
        except ray.exceptions.AuthenticationError:
            return NO_TOKEN
        print(json.dumps(_alive_nodes(ray.nodes())))
        ray.shutdown()
        return 0
    try:
        cluster_nodes(args.address, args.timeout)
    except ClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    ray.init(address=args.address, log_to_driver=False, logging_level=logging.ERROR)
    nodes = _alive_nodes(ray.nodes())
    probe = ray.remote(num_cpus=0, max_retries=0)(_node_version)
    found = ray.get([probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
        node["node_id"], soft=False)).remote() for node in nodes])
    ray.shutdown()
    here = code_version()
    print("node_id       ip               hostname         CPUs  GPUs  code_version")
    for node, seen in zip(nodes, found):
        print(f"{node['node_id'][:12]}  {node['ip']:<15}  {seen['hostname']:<15}  "
              f"{node['CPU']:>4g}  {node['GPU']:>4g}  {seen['code_version']}")
    differ = sum(seen["code_version"] != here for seen in found)
    print(f"{len(nodes)} nodes; this machine runs {here}; "
          + (f"{differ} node(s) run other code" if differ else "every node runs the same code"))
    return 1 if differ else 0


def _alive_nodes(nodes: list[dict]) -> list[dict]:
    return [{"node_id": node["NodeID"], "ip": node["NodeManagerAddress"],
             "hostname": node["NodeManagerHostname"],
             "CPU": node["Resources"].get("CPU", 0), "GPU": node["Resources"].get("GPU", 0)}
            for node in nodes if node["Alive"]]


if __name__ == "__main__":
    sys.exit(main())
