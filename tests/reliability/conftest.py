"""`raymlx tune` as a real process in its own process group, signalled by PID; its MLflow runs and Ray processes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from tests.conftest import DIABETES, ROOT
from tests.test_cluster import _kill_cluster, _uses

# A model whose fits take a while; each fit leaves its process's PID under fits/ (the test signals by
# it). The champion's refit (on every row, 442, where a fold's fits see 221) sleeps four times as long,
# long enough to be interrupted.
SLEEPY = '''
import os, time
from pathlib import Path
import numpy as np

class Sleepy:
    def __init__(self, seconds=0.3, label="sleepy"):
        self.seconds, self.label = seconds, label
    def fit(self, X, y):
        fits = Path(__file__).with_name("fits")
        fits.mkdir(exist_ok=True)
        (fits / f"{self.label}-{os.getpid()}").touch()
        time.sleep(self.seconds * (4 if len(X) > 400 else 1))
        return self
    def predict(self, X):
        return np.full(len(X), self.seconds * 300)
'''

SPEC = """
name: reliable
task: regression
data: {uri: data/diabetes.csv, target: progression}
validation: {folds: 2}
tracking: {uri: "sqlite:///mlflow.db"}
runtime: {num_cpus: 2}
baseline: false  # the trials counted are the spec's own
models:
  first:
    model: sleepy.py:Sleepy
    search: {algorithm: random, seed: 1, num_samples: 5, space: {seconds: {type: float, low: 0.8, high: 1.2}}}
  second:
    model: sleepy.py:Sleepy
    search: {algorithm: random, seed: 2, num_samples: 5, space: {seconds: {type: float, low: 0.8, high: 1.2}}}
"""


@dataclass
class Driver:
    """One project folder, one private Ray temp dir; runs `raymlx tune` there as a process of its own group.

    ``tracking`` is the tracking URI the test reads runs from (the project's ``mlflow.db`` unless set),
    ``options`` what every run is given first (``--set tracking.uri=...`` to use another).
    """

    project: Path
    temp: str
    process: subprocess.Popen | None = None
    tracking: str | None = None
    options: tuple[str, ...] = ()

    def start(self, *args: str) -> subprocess.Popen:
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS" and not k.startswith("MLFLOW_")}
        env.update(RAY_TMPDIR=self.temp, PYTHONPATH=str(ROOT))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "raymlx.cli", "tune", "specs.yaml", *self.options, *args], cwd=self.project, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, process_group=0)
        return self.process

    def run(self, *args: str, timeout: float = 300) -> tuple[int, str, str]:
        process = self.start(*args)
        out, err = process.communicate(timeout=timeout)
        return process.returncode, out, err

    def interrupt(self) -> None:
        """Ctrl-C as a terminal sends it: SIGINT to the driver's process group."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGINT)

    def kill(self) -> None:
        """SIGKILL to the driver alone."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)

    def finish(self, timeout: float = 120) -> tuple[int, str, str]:
        assert self.process is not None
        out, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, out, err

    def wait_until(self, condition: Callable[[], bool], timeout: float = 240) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while not _holds(condition):
            assert self.process.poll() is None, f"the run ended first: {self.process.communicate()[1][-2000:]}"
            assert time.monotonic() < deadline, "timed out waiting"
            time.sleep(0.05)

    def trials_finished(self) -> int:
        """Trial runs the driver has closed as FINISHED (MLflow is written as trials end; Tune's files later).

        Asked only once the driver's trials fit (its store exists by then): a store this process
        created at the same time as the driver would race it through MLflow's schema migrations.
        """
        if not (self.fits() and (self.tracking or (self.project / "mlflow.db").exists())):
            return 0
        return sum(1 for r in self.runs("trial") if r.info.status == "FINISHED")

    def fits(self, label: str = "sleepy") -> list[int]:
        return [int(f.name.rpartition("-")[2]) for f in (self.project / "fits").glob(f"{label}-*")]

    def ray_processes(self) -> list[int]:
        """Live processes of this project's Ray runtimes (they hold files under the private temp dir)."""
        return [int(p.name) for p in Path("/proc").iterdir()
                if p.name.isdigit() and int(p.name) != os.getpid() and _uses(p, self.temp) and not _zombie(p)]

    def no_ray_processes_within(self, seconds: float) -> list[int]:
        deadline = time.monotonic() + seconds
        while (left := self.ray_processes()) and time.monotonic() < deadline:
            time.sleep(0.2)
        return left

    def client(self) -> MlflowClient:
        return MlflowClient(self.tracking or f"sqlite:///{self.project / 'mlflow.db'}")

    def runs(self, role: str | None = None) -> list[Run]:
        client = self.client()
        experiment = client.get_experiment_by_name("reliable")
        if experiment is None:
            return []
        where = f"tags.`raymlx.role` = '{role}'" if role else ""
        return client.search_runs([experiment.experiment_id], filter_string=where, max_results=1000)

    def champion_version(self) -> str | None:
        client = self.client()
        try:
            return str(client.get_model_version_by_alias("reliable", "champion").version)
        except Exception:  # noqa: BLE001 - no registered model or no alias yet
            return None


def _holds(condition: Callable[[], bool]) -> bool:
    try:
        return condition()
    except Exception:  # noqa: BLE001 - the store is being created meanwhile
        return False


def _zombie(pid: Path) -> bool:
    try:
        return (pid / "stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except OSError:
        return True


@pytest.fixture
def driver(tmp_path: Path):
    (tmp_path / "data").mkdir()
    shutil.copy(DIABETES, tmp_path / "data" / "diabetes.csv")
    (tmp_path / "sleepy.py").write_text(SLEEPY)
    (tmp_path / "specs.yaml").write_text(textwrap.dedent(SPEC))
    temp = tempfile.mkdtemp(prefix="rmxr", dir="/tmp")  # short: Ray's socket paths have a length limit
    made = Driver(tmp_path, temp)
    try:
        yield made
    finally:
        if made.process is not None and made.process.poll() is None:
            made.process.kill()
            made.process.communicate()
        _kill_cluster(temp)
        shutil.rmtree(temp, ignore_errors=True)
