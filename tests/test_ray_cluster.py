"""The Ray executor against a real cluster: a head node started here as its own process, as a
user would (``ray start --head``), with token authentication (the pinned Ray's default).

Everything stays on the loopback address. On Linux, Ray 2.60 replaces 127.0.0.1 (in
``--node-ip-address`` and in a driver's address) by the machine's interface address unless
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, which makes it keep the loopback address (its only other
effect: no second node can join); the fixture sets it for the head and the drivers, and checks
that the driver dials 127.0.0.1 and that the cluster's one node is 127.0.0.1 before any test.
The cluster is stopped (its whole process session) even when a test fails.
"""
import importlib.util
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import fake_cell
from benchmarks.run import main
from benchmarks.runner.ray_executor import _provenance, cluster_nodes, run_ray
from benchmarks.runner.spec import RunSpec
from benchmarks.runner.store import Store
from benchmarks.runner.version import code_version

pytestmark = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                                reason="Ray is not installed (pip install -e '.[ray]')")

LOOPBACK = "127.0.0.1"
TINY = "digits:B0-C2?train=300&test=150"
# One cell, two threads: the slowest step here is a Ray worker importing torch and Avalanche.
GRID = ["--methods", "finetune", "--streams", TINY, "--seeds", "0", "--epochs", "1",
        "--threads", "2", "--quiet"]
# What keeps Ray on the loopback address, and off the network (no usage reports).
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


def forbidden(spec, progress=False):
    raise AssertionError(f"cell {spec.id} should not run")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def keep_ray_on_loopback(patch: pytest.MonkeyPatch) -> None:
    """Set LOOPBACK_ENV for the child processes, and its effect in this process, where Ray may
    have been imported (the constant is read at import)."""
    for key, value in LOOPBACK_ENV.items():
        patch.setenv(key, value)
    from ray._private import ray_constants, services

    patch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)
    address = f"{LOOPBACK}:{free_port()}"
    assert services.canonicalize_bootstrap_address(address) == address, "Ray left loopback"


def use_token(patch: pytest.MonkeyPatch, mode: str = None, token: str = None) -> None:
    """Set (or unset, for None) RAY_AUTH_MODE and RAY_AUTH_TOKEN."""
    for key, value in (("RAY_AUTH_MODE", mode), ("RAY_AUTH_TOKEN", token)):
        if value is None:
            patch.delenv(key, raising=False)
        else:
            patch.setenv(key, value)


def reread_token() -> None:
    """Make this process's Ray read RAY_AUTH_MODE and the token again (it keeps what it read
    first, as its own ``_enable_token_auth`` does)."""
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def session_processes(session: int) -> list[int]:
    """The processes of a session (the head and every process Ray started under it)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[3]) == session:
            pids.append(int(stat.parent.name))
    return pids


def stop(head: subprocess.Popen) -> None:
    """SIGTERM the head's process group, then SIGKILL whatever is left of its session."""
    try:
        os.killpg(head.pid, signal.SIGTERM)
        head.wait(timeout=15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    for pid in session_processes(head.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    head.wait()


@pytest.fixture(scope="module")
def cluster():
    """``127.0.0.1:<port>`` of a one-node cluster with 2 CPUs and a token of its own."""
    temp = tempfile.mkdtemp(prefix="ray")  # short: Ray's socket paths live under it
    port = free_port()
    with pytest.MonkeyPatch.context() as patch:
        use_token(patch, "token", secrets.token_hex(32))
        keep_ray_on_loopback(patch)
        reread_token()
        with open(Path(temp) / "head.log", "w") as log:
            head = subprocess.Popen(
                [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
                 "--node-ip-address", LOOPBACK, "--port", str(port), "--num-cpus", "2",
                 "--num-gpus", "0", "--include-dashboard", "false", "--disable-usage-stats",
                 "--ray-client-server-port", str(free_port()),
                 "--dashboard-agent-listen-port", str(free_port()), "--temp-dir", temp],
                # Workers import the driver's modules from its working directory, and the
                # fake cell from tests/.
                env={**os.environ, "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
                     "PYTHONPATH": str(Path(__file__).parent)},
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            while "Ray runtime started" not in (Path(temp) / "head.log").read_text():
                assert head.poll() is None and time.monotonic() < deadline, \
                    (Path(temp) / "head.log").read_text()
                time.sleep(0.1)
            address = f"{LOOPBACK}:{port}"
            assert [node["ip"] for node in cluster_nodes(address, 30)] == [LOOPBACK]
            yield address
        finally:
            stop(head)
            shutil.rmtree(temp, ignore_errors=True)
    reread_token()  # forget this cluster's token


def test_a_grid_on_the_cluster_gives_the_local_records_and_says_where_it_ran(cluster,
                                                                           tmp_path):
    assert main([*GRID, "--out", str(tmp_path / "local")]) == 0
    assert main([*GRID, "--ray-address", cluster, "--out", str(tmp_path / "ray")]) == 0
    local, ray = Store(tmp_path / "local").load_all(), Store(tmp_path / "ray").load_all()
    assert set(ray) == set(local) and len(ray) == 1
    for cell_id, record in ray.items():
        assert record["env"]["threads"] == local[cell_id]["env"]["threads"] == 2
        assert record["summary"] == local[cell_id]["summary"]
        assert [(s["metrics"], s["per_class"]) for s in record["sessions"]] == [
            (s["metrics"], s["per_class"]) for s in local[cell_id]["sessions"]]
        assert record["code_version"] == code_version()  # computed on the node
        assert record["ray"]["node_ip"] == LOOPBACK and len(record["ray"]["node_id"]) == 56
        assert (record["ray"]["attempts"], record["ray"]["crashes"]) == (1, [])


def test_a_cell_no_node_can_take_is_refused_before_any_work(cluster, tmp_path, capsys):
    start = time.monotonic()
    assert main([*GRID, "--threads", "4", "--ray-address", cluster, "--out", str(tmp_path)],
                cell=forbidden) == 2
    assert time.monotonic() - start < 20
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: finetune on digits:B0-C2")
    assert "asks Ray for 4 CPUs and 0 GPUs per cell (--threads 4), but the largest node" in err
    assert f"({LOOPBACK}) has 2 CPUs and 0 GPUs; use --threads 2 or less" in err
    assert not tmp_path.joinpath("records").exists()


@pytest.mark.parametrize("mode, token, says", [
    (None, None, "requires token authentication: set RAY_AUTH_MODE=token (it is unset)"),
    ("token", "0" * 64, "refused this driver's authentication token"),
    ("token", None, "RAY_AUTH_MODE=token but this driver has no token"),
])
def test_a_driver_without_the_cluster_token_is_told_what_to_set(cluster, tmp_path, capsys,
                                                               monkeypatch, mode, token, says):
    use_token(monkeypatch, mode, token)  # for the child process that asks the cluster first
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ray/auth_token either
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    start = time.monotonic()
    assert main([*GRID, "--ray-address", cluster, "--out", str(tmp_path)], cell=forbidden) == 2
    assert time.monotonic() - start < 15  # Ray alone retries for 20 s, then a traceback
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says in err and "RAY_AUTH_TOKEN" in err


def test_a_worker_that_dies_is_retried_up_to_the_retries(cluster):
    (died,) = run_ray([RunSpec("toy", TINY, 0, {"mode": "die"})], address=cluster,
                      cell=fake_cell.run_cell, threads=2, retries=1)
    assert died["status"] == "failed" and died["ray"]["attempts"] == 2, died["error"]
    assert [c.split(":")[0] for c in died["ray"]["crashes"]] == ["WorkerCrashedError"] * 2
    assert died["error"].startswith("WorkerCrashedError: ")


def test_a_cell_its_node_ran_with_other_code_is_failed():
    ran = {"status": "done", "error": None, "code_version": "git:0123456789ab", "summary": {},
           "ray": {"hostname": "node7", "node_ip": "10.0.0.7"}}
    record = _provenance(dict(ran), "git:ba9876543210", 1, [])
    assert (record["status"], record["ray"]["attempts"]) == ("failed", 1)
    assert record["error"].startswith("code version mismatch: node node7 (10.0.0.7) ran "
                                      "git:0123456789ab, the driver has git:ba9876543210;")
    assert "summary" in record  # what the node computed is kept for inspection
    assert _provenance(dict(ran), "git:0123456789ab", 1, [])["status"] == "done"
    failed = {**ran, "status": "failed", "error": "ValueError: loss is NaN"}
    assert _provenance(failed, "git:ba9876543210", 1, [])["error"] == "ValueError: loss is NaN"


def test_a_bad_address_fails_within_the_timeout(tmp_path, capsys, monkeypatch):
    keep_ray_on_loopback(monkeypatch)
    address = f"{LOOPBACK}:{free_port()}"  # nothing listens there
    start = time.monotonic()
    assert main([*GRID, "--ray-address", address, "--ray-timeout", "2", "--out",
                 str(tmp_path)], cell=forbidden) == 2
    assert time.monotonic() - start < 10  # Ray alone retries for ~14 min, then a traceback
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"error: no Ray cluster answered at {address} within 2 s")


def test_ray_flags_need_the_ray_executor(tmp_path, capsys):
    assert main([*GRID, "--executor", "local", "--ray-address", f"{LOOPBACK}:6379",
                 "--ray-retries", "0", "--out", str(tmp_path)], cell=forbidden) == 2
    assert capsys.readouterr().err == ("error: --ray-address, --ray-retries only apply with "
                                       "--executor ray\n")
