"""Tracking to a real `mlflow server` over HTTP: trial runs, the registry and the champion's artifacts all go through it."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from raymlx.checks import validate
from raymlx.spec_io import load_spec
from raymlx.tracking import ROLE_TAG
from raymlx.experiment import run_experiment

SPEC = """
name: remote
baseline: false  # this test counts runs and trials: no baseline row among them
task: regression
data: {uri: data/diabetes.csv, target: progression}
validation: {folds: 3}
tracking: {uri: "http://127.0.0.1:PORT", experiment: remote-experiment, registered_model: remote-model}
models:
  ridge:
    model: sklearn.linear_model:Ridge
    search: {num_samples: 2, space: {alpha: {type: float, low: 0.1, high: 10.0, log: true}}}
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    command = [str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1", "--port", str(port),
               "--backend-store-uri", f"sqlite:///{root / 'server.db'}", "--artifacts-destination",
               str(root / "artifacts"), "--workers", "1"]
    server = subprocess.Popen(command, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240  # a loaded 2-core machine starts it slowly
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    raise RuntimeError("mlflow server did not start")
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}", root
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_an_experiment_tracks_and_registers_through_a_tracking_server(ray_runtime, project, mlflow_server):
    uri, server_root = mlflow_server
    (project / "specs.yaml").write_text(textwrap.dedent(SPEC).replace("http://127.0.0.1:PORT", uri))
    loaded = load_spec(project / "specs.yaml")
    frame = validate(loaded)
    result = run_experiment(loaded, frame)
    assert result.tracking_uri == uri
    client = MlflowClient(uri)
    trials = client.search_runs([result.experiment_id], f"tags.`{ROLE_TAG}` = 'trial'")
    assert len(trials) == 2 and all("rmse" in t.data.metrics for t in trials)
    assert not (project / "mlflow.db").exists() and not (project / "mlartifacts").exists()  # nothing kept locally
    assert any((server_root / "artifacts").rglob("MLmodel"))  # the champion went to the server's artifact store
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model("models:/remote-model@champion")
    predicted = model.predict(frame.drop(columns="progression").head(5))
    assert predicted.shape == (5,) and np.isfinite(predicted).all()


def test_an_unreachable_tracking_server_stops_the_run_with_its_own_error(ray_runtime, project, monkeypatch):
    """Tune starts while the session's runs open: when they cannot, tuning stops at the next trial and
    the store's error is what the user sees, not how Tune stopped."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    port = _free_port()  # nothing listens there
    spec = SPEC.replace("PORT", str(port)).replace("num_samples: 2", "num_samples: 30")
    (project / "specs.yaml").write_text(textwrap.dedent(spec))
    loaded = load_spec(project / "specs.yaml")
    started = time.monotonic()
    with pytest.raises(Exception, match=f"127.0.0.1:{port}") as failure:
        run_experiment(loaded, validate(loaded))
    assert "TuneError" not in type(failure.value).__name__
    assert time.monotonic() - started < 60
    results = list((project / ".raymlx" / "ray_results").rglob("result.json"))
    assert len(results) < 30  # stopped early, not after every trial
