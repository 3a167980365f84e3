"""``raymlx serve`` as a user runs it: --detach, --reload and --stop on a real server process of its own, in the
retraining cycle (tune -> gate -> reload) with clients sending all along."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from raymlx.cli import app
from raymlx.serve._control import _free_port
from tests.listening import descendants, exposed, listening
from tests.serve.conftest import TARGET, assert_switched_once, clients_sending, wait_until_all_see


def raymlx(*args: str, env: dict, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "raymlx.cli", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYMLX_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


STUMP = """
stump:
  model: sklearn.tree:DecisionTreeRegressor
  params: {random_state: 0}
  search: {algorithm: grid, space: {max_depth: {type: choice, values: [1]}}}
"""
RIDGE = """
ridge:
  model: sklearn.linear_model:Ridge
  search: {algorithm: grid, space: {alpha: {type: choice, values: [0.1]}}}
"""


def cycle_spec(project: Path, port: int, models: str) -> Path:
    """The project's spec: tiny searches, no report, a server of one replica on ``port``."""
    spec = project / "specs.yaml"
    spec.write_text(textwrap.dedent(f"""
        name: cycle
        task: regression
        data: {{uri: data/diabetes.csv, target: {TARGET}}}
        validation: {{strategy: kfold, folds: 3}}
        baseline: false
        report: {{enabled: false}}
        tracking: {{uri: "sqlite:///{project / 'mlflow.db'}"}}
        serve: {{port: {port}, autoscaling: {{min_replicas: 1, max_replicas: 1}}}}
        models:
        """) + textwrap.indent(textwrap.dedent(models), "  "))
    return spec


def tune(project: Path, port: int, data: pd.DataFrame, models: str) -> dict[str, str]:
    """``raymlx tune`` of ``models`` on ``data``; the gate's decision as the workflow's next step reads it."""
    data.to_csv(project / "data" / "diabetes.csv", index=False)
    spec, decision = cycle_spec(project, port, models), project / f"decision-{time.monotonic_ns()}"
    result = CliRunner().invoke(app, ["tune", str(spec), "--decision-file", str(decision)])
    assert result.exit_code == 0, result.output
    return dict(line.split("=", 1) for line in decision.read_text().splitlines())


def answers(url: str, rows: pd.DataFrame) -> list[float]:
    reply = httpx.post(url + "/predict", json={"records": rows.to_dict("records")}, timeout=30)
    assert reply.status_code == 200, reply.text
    return reply.json()["predictions"]


@pytest.mark.slow
def test_the_retraining_cycle_tune_gate_reload_without_a_failed_request(ray_runtime, project, diabetes, home):
    """tune -> serve --detach -> tune on more rows (promoted) -> --reload -> tune (kept) -> --reload -> --stop."""
    port = _free_port("127.0.0.1")
    env, url, spec = {"RAYMLX_HOME": str(home)}, f"http://127.0.0.1:{port}", project / "specs.yaml"
    first = tune(project, port, diabetes.head(150), STUMP)
    assert (first["promoted"], first["version"]) == ("true", "1")
    started = raymlx("serve", str(spec), "--detach", env=env)
    assert started.returncode == 0, started.stderr[-2000:]
    assert f"serving version 1 at {url}" in started.stdout
    pid = json.loads((home / "serve" / f"{port}.json").read_text())["pid"]
    rows, tracking = diabetes.drop(columns=[TARGET]).sample(20, random_state=2), f"sqlite:///{project / 'mlflow.db'}"
    mlflow.set_tracking_uri(tracking)
    try:
        before = answers(url, rows)
        np.testing.assert_allclose(before, mlflow.pyfunc.load_model("models:/cycle/1").predict(rows), rtol=1e-9)
        server = descendants(pid)  # Ray's processes, Serve's and the relay: loopback only
        assert {"gcs_server", "raylet", "ray::ServeRepli"} <= {name for _, name, _ in listening(server)}
        assert exposed(server) == []
        with clients_sending(url, 2, pause_s=0.02, limit_s=900) as clients:
            better = tune(project, port, diabetes, STUMP + RIDGE)  # all rows: a better model is among the candidates
            assert (better["promoted"], better["version"], better["alias"]) == ("true", "2", "champion"), better
            assert "for champion version 1 on this run's folds" in better["reason"]
            reloaded = raymlx("serve", str(spec), "--reload", env=env)  # as the workflow does after a promotion
            assert reloaded.returncode == 0 and f"now serving version 2 at {url}" in reloaded.stdout, reloaded.stderr
            wait_until_all_see(clients, "2")
            after = answers(url, rows)

            worse = tune(project, port, diabetes, STUMP)  # the stump does not beat the ridge rescored on its folds
            assert (worse["promoted"], worse["version"], worse["alias"]) == ("false", "3", "challenger"), worse
            assert "does not beat" in worse["reason"]
            kept = raymlx("serve", "--reload", env=env)  # no spec: the one server running
            assert kept.returncode == 0 and f"now serving version 2 at {url}" in kept.stdout, kept.stderr
            time.sleep(2)  # a server rolling to the challenger would be doing it now
            assert answers(url, rows) == after
        assert_switched_once(clients, "1", "2")  # and never version 3
        np.testing.assert_allclose(after, mlflow.pyfunc.load_model("models:/cycle/2").predict(rows), rtol=1e-9)
        assert not np.allclose(after, before)
        aliases = MlflowClient(tracking).get_registered_model("cycle").aliases
        assert {a: str(v) for a, v in aliases.items()} == {"champion": "2", "challenger": "3"}

        stopped = raymlx("serve", str(spec), "--stop", env=env)
        assert stopped.returncode == 0 and f"stopped {url}" in stopped.stdout, stopped.stderr[-2000:]
        with pytest.raises(httpx.ConnectError):
            httpx.get(url + "/health")
        assert not (home / "serve" / f"{port}.json").exists()
    finally:
        try:
            os.kill(pid, signal.SIGTERM)  # only if a failed assertion left it running
        except ProcessLookupError:
            pass


@pytest.mark.parametrize(("args", "message"), [
    pytest.param(["serve"], "name a spec (serves its champion) or --model URI", id="nothing-to-serve"),
    pytest.param(["serve", "--stop"], "no raymlx server is running", id="stop-none-running"),
    pytest.param(["serve", "--reload"], "no raymlx server is running", id="reload-none-running"),
    pytest.param(["serve", "--model", "models:/nope@champion", "--tracking-uri", "sqlite:///{tmp}/x.db"],
                 "models:/nope@champion: no such model", id="unknown-model"),
    pytest.param(["serve", "--model", "models:/m@champion", "--set", "serve.port=0"], "port", id="bad-port"),
    pytest.param(["tune", "specs.yaml", "--decision-file", "{tmp}/no/such/gate.out"],
                 "--decision-file {tmp}/no/such/gate.out: the folder {tmp}/no/such does not exist",
                 id="decision-file-folder-missing"),
])
def test_bad_input_exits_2_with_a_message(args, message, home, tmp_path):
    result = CliRunner().invoke(app, [a.replace("{tmp}", str(tmp_path)) for a in args])
    assert result.exit_code == 2, result.output
    assert message.replace("{tmp}", str(tmp_path)) in " ".join(result.output.split())
