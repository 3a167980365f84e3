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
from collections import Counter
from pathlib import Path

import pytest

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


@pytest.fixture(scope="module")
def two_nodes():
    """One cluster of two 1-CPU nodes for every way of giving its address (each run finishes before the next)."""
    temp_dir = tempfile.mkdtemp(prefix="rmxc", dir="/tmp")
    port = _free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}  # a loopback test cluster: no token to hand around
    common = ["--num-cpus=1", "--node-ip-address=127.0.0.1", "--disable-usage-stats"]
    try:
        subprocess.run([RAY, "start", "--head", f"--port={port}", f"--temp-dir={temp_dir}",
                        "--include-dashboard=false", *common], env=env, check=True, capture_output=True, timeout=120)
        subprocess.run([RAY, "start", f"--address=127.0.0.1:{port}", *common], env=env, check=True,
                       capture_output=True, timeout=120)
        yield f"127.0.0.1:{port}", env
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
    address, env = two_nodes
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
