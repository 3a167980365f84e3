"""Credentials in the tracking URI are never printed, logged or stored; an unreachable tracking server is found first.

A whole run tracked through a URI with a password (interrupted, resumed, completed) is searched for it in
tests/reliability/test_interrupt.py.

Real processes: `raymlx` commands as subprocesses, a real `mlflow server` on 127.0.0.1, Ray under a private
temp dir whose logs are searched too.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import DIABETES
from tests.test_remote_tracking import _free_port

SECRET = "pl4nted-s3cret"

SPEC = """
name: secret
task: regression
data: {uri: data/diabetes.csv, target: progression}
validation: {folds: 3}
models:
  ridge:
    model: sklearn.linear_model:Ridge
    search: {num_samples: 2, space: {alpha: {type: float, low: 0.1, high: 10.0, log: true}}}
"""


@pytest.fixture
def project(tmp_path) -> Path:
    (tmp_path / "data").mkdir()
    shutil.copy(DIABETES, tmp_path / "data" / "diabetes.csv")
    (tmp_path / "specs.yaml").write_text(textwrap.dedent(SPEC))
    return tmp_path


def _raymlx(project: Path, *args: str, ray_tmp: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith(("MLFLOW_", "RAY_ADDRESS"))}
    env["RAY_TMPDIR"] = str(ray_tmp)
    return subprocess.run([sys.executable, "-m", "raymlx.cli", *args], cwd=project, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _files_holding(root: Path, text: str) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                if text.encode() in path.read_bytes():
                    found.append(str(path))
            except OSError:
                continue
    return found


@pytest.mark.parametrize("command", [["validate"], ["tune"]])
def test_an_unreachable_tracking_server_is_a_spec_error_before_any_trial(project, tmp_path_factory, command):
    uri = f"http://alice:{SECRET}@127.0.0.1:{_free_port()}"  # nothing listens there
    started = time.monotonic()
    done = _raymlx(project, *command, "specs.yaml", "--set", f"tracking.uri={uri}",
                   ray_tmp=tmp_path_factory.mktemp("ray"))
    assert done.returncode == 2, done.stderr[-3000:]
    assert time.monotonic() - started < 60  # seconds of retries, not every trial's
    assert "tracking.uri: the tracking server at http://127.0.0.1:" in done.stderr
    assert "does not answer" in done.stderr and SECRET not in done.stderr + done.stdout
    assert not (project / ".raymlx" / "ray_results").exists()  # no trial ran


def test_validate_offline_does_not_ask_the_tracking_server(project, tmp_path_factory):
    uri = f"http://127.0.0.1:{_free_port()}"
    done = _raymlx(project, "validate", "specs.yaml", "--offline", "--set", f"tracking.uri={uri}",
                   ray_tmp=tmp_path_factory.mktemp("ray"))
    assert done.returncode == 0, done.stderr
    assert "valid (1 models, 442 rows)" in done.stdout
