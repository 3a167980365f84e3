"""Scale out: the same spec on a two-node Ray cluster (a head and a worker started with `ray start` on this machine)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import httpx
import mlflow
import pytest

from tests.listening import descendants
from tests.test_tune import CONCURRENT, SLEEPY

RAY = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _uses(pid: Path, marker: str) -> bool:
    """Whether a process names the marker on its command line or holds a file under it open (its logs)."""
    try:
        if marker in (pid / "cmdline").read_bytes().decode(errors="replace"):
            return True
        return any(os.readlink(fd).startswith(marker) for fd in (pid / "fd").iterdir())
    except OSError:
        return False


def _kill_cluster(temp_dir: str) -> None:
    """End only this cluster's processes (``ray stop`` would end every Ray runtime on the machine)."""
    for pid in Path("/proc").iterdir():
        if pid.name.isdigit() and int(pid.name) != os.getpid() and _uses(pid, temp_dir):
            try:
                os.kill(int(pid.name), signal.SIGKILL)
            except ProcessLookupError:
                pass


class Cluster(NamedTuple):
    """A running test cluster: its GCS address, the environment its nodes were started with, its temp dir."""

    address: str
    env: dict
    temp_dir: str


@pytest.fixture(scope="module")
def two_nodes():
    """One cluster of two 1-CPU nodes for every test of the module (each run finishes before the next; the
    serving test, last, takes the worker node away)."""
    temp_dir = tempfile.mkdtemp(prefix="rmxc", dir="/tmp")
    port = _free_port()
    # A loopback test cluster: no token to hand around. Nodes started as a user starts them: without the
    # Serve settings `raymlx serve` gives the processes it starts (the test session may hold them).
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_SERVE_")}
    env["RAY_AUTH_MODE"] = "disabled"
    common = ["--num-cpus=1", "--node-ip-address=127.0.0.1", "--disable-usage-stats"]
    try:
        subprocess.run([RAY, "start", "--head", f"--port={port}", f"--temp-dir={temp_dir}",
                        "--include-dashboard=false", *common], env=env, check=True, capture_output=True, timeout=120)
        subprocess.run([RAY, "start", f"--address=127.0.0.1:{port}", *common], env=env, check=True,
                       capture_output=True, timeout=120)
        yield Cluster(f"127.0.0.1:{port}", env, temp_dir)
    finally:
        _kill_cluster(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _trial_nodes(project: Path) -> Counter:
    results = [json.loads(line) for path in (project / ".raymlx" / "ray_results").rglob("result.json")
               for line in path.read_text().splitlines() if line.strip()]
    assert len(results) == 7
    return Counter(r["node_id"] for r in results)


# Two trials that run at once on a cluster of two 1-CPU nodes run on different nodes. A fit waits (up to two minutes)
# until a trial in another process has started, so on a loaded machine the head cannot finish every trial before the
# worker node's first trial actor is up; a worker node that cannot run trials leaves every trial on the head.
MEETING = SLEEPY + '''
import os

class Meeting(Sleepy):
    def __init__(self, seconds=0.4, meet=""):
        super().__init__(seconds)
        self.meet = meet
    def fit(self, X, y):
        os.makedirs(self.meet, exist_ok=True)
        open(os.path.join(self.meet, str(os.getpid())), "w").close()  # the folds of a trial run in one process
        deadline = time.monotonic() + 120
        while len(os.listdir(self.meet)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        return super().fit(X, y)
'''


def _tune(project: Path, env: dict, *args: str, meet: bool = False) -> subprocess.CompletedProcess:
    (project / "sleepy.py").write_text(MEETING)
    spec = textwrap.dedent(CONCURRENT)
    if meet:
        spec = spec.replace("model: sleepy.py:Sleepy", f"model: sleepy.py:Meeting\n    params: {{meet: {project / 'met'}}}")
    (project / "specs.yaml").write_text(spec)
    process = subprocess.run([sys.executable, "-m", "raymlx.cli", "tune", str(project / "specs.yaml"), *args],
                             cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr[-3000:]
    assert "champion:" in process.stdout
    return process


@pytest.mark.parametrize("how", ["--address", "RAY_ADDRESS"])
def test_trials_are_placed_on_both_nodes(two_nodes, project, how):
    address, env, _ = two_nodes
    if how == "--address":
        _tune(project, env, "--address", address, meet=True)
    else:  # as in a Ray Job: the job's driver finds its cluster in $RAY_ADDRESS
        _tune(project, {**env, "RAY_ADDRESS": address}, meet=True)
    nodes = _trial_nodes(project)
    assert len(nodes) == 2, nodes  # the spec's own files reached the worker node too


def test_without_an_address_a_run_starts_its_own_runtime_beside_one_ray_start_left(project, tmp_path):
    temp = tempfile.mkdtemp(prefix="rmxl", dir="/tmp")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(RAY_TMPDIR=temp, RAY_AUTH_MODE="disabled")  # Ray's default temp dir, here under `temp`
    try:
        subprocess.run([RAY, "start", "--head", f"--port={_free_port()}", "--num-cpus=1", "--include-dashboard=false",
                        "--disable-usage-stats"], env=env, check=True, capture_output=True, timeout=120)
        assert (Path(temp) / "ray" / "ray_current_cluster").is_file()  # where a bare ray.init() would look
        (running,) = Path(temp, "ray").glob("session_2*")
        _tune(project, env)
        cluster_node = (running / "logs" / "raylet.out").read_text().split("node_id=")[1][:56]
        nodes = _trial_nodes(project)
        assert len(nodes) == 1 and cluster_node not in nodes, (cluster_node, nodes)
    finally:
        _kill_cluster(temp)
        shutil.rmtree(temp, ignore_errors=True)


def test_in_a_ray_job_the_jobs_working_dir_carries_the_spec_folder(tmp_path, monkeypatch):
    from raymlx.errors import UserInputError
    from raymlx.runtime import _working_dir

    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR", raising=False)
    assert _working_dir(str(tmp_path))["working_dir"] == str(tmp_path)  # not in a job: the spec's folder is shipped
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", '{"runtime_env": {"working_dir": "gcs://_ray_pkg_1.zip"}}')
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    assert _working_dir(str(tmp_path / "sub")) == {}  # Ray refuses a second working_dir beside the job's
    with pytest.raises(UserInputError, match="outside the Ray Job's working directory"):
        _working_dir(str(tmp_path.parent))


# What Serve's controller says of the served application's replicas, and Ray of its nodes, twice a second: a driver
# of its own (the test process may be in another Ray runtime); the last line is the latest.
WATCH = '''
import json, sys, time
import ray
ray.init(address=sys.argv[1], log_to_driver=False, logging_level="ERROR")
head = next(n["NodeID"] for n in ray.nodes() if "node:__internal_head__" in n["Resources"])
while True:
    try:
        controller = ray.get_actor("SERVE_CONTROLLER_ACTOR", namespace="serve")
        details = ray.get(controller.get_serve_instance_details.remote(), timeout=10)
        replicas = [{"node": r["node_id"], "state": str(r["state"]).rsplit(".", 1)[-1], "pid": r["pid"]}
                    for r in details["applications"]["raymlx"]["deployments"]["champion"]["replicas"]]
        groups = ray.get(controller.get_target_groups.remote("raymlx"), timeout=10)
        targets = [t.port for g in groups if str(g.protocol).endswith("HTTP") for t in g.targets]
    except Exception:  # not deployed yet
        replicas, targets = [], []
    nodes = {n["NodeID"]: n["Alive"] for n in ray.nodes()}
    print(json.dumps({"head": head, "nodes": nodes, "replicas": replicas, "targets": targets}), flush=True)
    time.sleep(0.5)
'''
REPLICAS, REPLICA_CPUS = 2, 0.5  # two replicas fit on one 1-CPU node: the head can take over the worker's replica


def _watched(log: Path, condition, timeout_s: float) -> dict:
    """The watcher's latest report once ``condition`` holds for it."""
    deadline, latest = time.monotonic() + timeout_s, {}
    while time.monotonic() < deadline:
        # Whole lines of the watcher's own (the last may be half written; Ray prints its warnings there too).
        lines = [line for line in log.read_text().rpartition("\n")[0].splitlines() if line.startswith('{"head"')]
        latest = json.loads(lines[-1]) if lines else {}
        if latest and condition(latest):
            return latest
        time.sleep(0.25)
    raise AssertionError(f"not within {timeout_s:.0f} s: {latest}")


def _running(state: dict) -> list[str]:
    """The node of each running replica."""
    return [r["node"] for r in state["replicas"] if r["state"] == "RUNNING"]


def _node_processes(node_id: str) -> set[int]:
    """The raylet of node ``node_id``, every process below it (its workers and agents), and any other naming it."""
    found = set()
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and f"node_id={node_id}".encode() in (proc / "cmdline").read_bytes().replace(
                    b"-", b"_"):
                found.add(int(proc.name))
        except OSError:
            continue
    raylets = {pid for pid in found if Path(f"/proc/{pid}/comm").read_text().strip() == "raylet"}
    assert len(raylets) == 1, found
    return found.union(*(descendants(pid) for pid in raylets))


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] in "ZX"
    except OSError:
        return True


def test_serving_from_the_cluster_survives_losing_the_worker_node(two_nodes, tmp_path):
    """`raymlx serve --address` with a replica on each node answers through the relay; killing the worker node
    (its raylet and every process of it, by PID) fails under 1 % of requests, and Serve starts the lost replica again
    on the head. Last in the module: the cluster has one node after it."""
    from tests.serve.conftest import clients_sending
    from tests.serve.test_failover import listening_pid

    address, env, _ = two_nodes
    store = _registered(tmp_path, "clustered")
    port, log = _free_port(), tmp_path / "watch.jsonl"
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "raymlx.cli", "serve", "--model", "models:/clustered@champion",
               "--tracking-uri", store, "--address", address, "--set", f"serve.port={port}",
               "--set", f"serve.num_cpus={REPLICA_CPUS}", "--set", f"serve.autoscaling.min_replicas={REPLICAS}",
               "--set", f"serve.autoscaling.max_replicas={REPLICAS}"]
    with open(tmp_path / "serve.out", "w") as serve_out, open(log, "w") as watch_out:
        serving = subprocess.Popen(command, cwd=tmp_path, env={**env, "RAYMLX_HOME": str(tmp_path / "home")},
                                   stdout=serve_out, stderr=subprocess.STDOUT)
        watcher = subprocess.Popen([sys.executable, "-c", WATCH, address], env=env, stdout=watch_out,
                                   stderr=subprocess.DEVNULL)
    try:
        state = _watched(log, lambda s: len(_running(s)) == REPLICAS, timeout_s=240)
        head = state["head"]
        (worker,) = set(_running(state)) - {head}  # one replica on each node (Serve spreads them)
        for target in state["targets"]:  # what the relay reaches: each replica's own port (direct ingress)
            assert "ServeReplica" in Path(f"/proc/{listening_pid(target)}/cmdline").read_text(), state
        time.sleep(1.5)  # the relay re-reads the replicas every second
        assert httpx.get(url + "/health", timeout=30).json()["version"] == "1"
        with clients_sending(url, 4, pause_s=0.01, limit_s=300) as clients:
            _wait_answered(clients, 40)
            victims = _node_processes(worker)
            for pid in victims:
                os.kill(pid, signal.SIGKILL)
            killed = time.monotonic()
            state = _watched(log, lambda s: not s["nodes"][worker] and _running(s) == [head] * REPLICAS,
                             timeout_s=120)
            replaced_s = time.monotonic() - killed
            _wait_answered(clients, sum(len(c.seen) for c in clients) + 40)  # and more after it
        failures = [f for c in clients for f in c.failures]
        answered = sum(len(c.seen) for c in clients)
        print(f"worker node {worker[:8]} killed ({len(victims)} processes); replica replaced on the head after "
              f"{replaced_s:.1f} s; {len(failures)} of {answered + len(failures)} requests failed: {failures[:5]}")
        assert all(_gone(pid) for pid in victims)
        assert len(failures) < 0.01 * (answered + len(failures)), failures[:10]
    finally:
        _terminate(serving, watcher)
    assert serving.returncode == 0, (tmp_path / "serve.out").read_text()[-3000:]


def _terminate(*processes: subprocess.Popen) -> None:
    """SIGTERM each process and wait for it (SIGKILL after two minutes)."""
    for process in processes:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()


def _registered(folder: Path, name: str) -> str:
    """A sqlite MLflow store under ``folder`` with a ridge on the diabetes data registered as ``name``'s champion."""
    import pandas as pd
    from sklearn.linear_model import Ridge

    from tests.conftest import DIABETES
    from tests.serve.conftest import TARGET, register, tabular

    diabetes = pd.read_csv(DIABETES)
    store, previous = f"sqlite:///{folder / 'mlflow.db'}", mlflow.get_tracking_uri()
    try:
        mlflow.set_tracking_uri(store)
        mlflow.create_experiment("serve", artifact_location=(folder / "artifacts").as_uri())
        register(store, name, tabular(diabetes, Ridge()), diabetes.drop(columns=[TARGET]).head(5))
    finally:
        mlflow.set_tracking_uri(previous)
    return store


def _wait_answered(clients, count: int, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while sum(len(c.seen) for c in clients) < count:
        assert time.monotonic() < deadline, [c.failures[-3:] for c in clients]
        time.sleep(0.1)
