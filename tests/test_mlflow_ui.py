"""MLflow's own UI on a raymlx store, in a real headless Chromium: the link raymlx prints opens on the runs."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from raymlx.tracking import EXPERIMENT_KIND_TAG, ensure_experiment, runs_page, start_runs

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, process: subprocess.Popen, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, "mlflow server exited"
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"mlflow server at {url} did not answer in {timeout_s} s")


def test_the_printed_runs_link_opens_mlflow_ui_on_the_nested_runs(tmp_path: Path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "the UI test needs chromium (apt-get install -y chromium)"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment_id = ensure_experiment("ui-check", tracking_uri=uri, base_dir=tmp_path)
    client = MlflowClient(uri)
    assert client.get_experiment(experiment_id).tags[EXPERIMENT_KIND_TAG[0]] == EXPERIMENT_KIND_TAG[1]
    session, parents = start_runs(client, experiment_id, name="uicheck", models=["ridge"])
    for run_id in [*parents.values(), session]:
        client.set_terminated(run_id)
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
                               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_healthy(base, server)
        url = runs_page(base, experiment_id)
        dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1400,900",
                              f"--user-data-dir={tmp_path / 'chromium'}", "--virtual-time-budget=20000",
                              "--dump-dom", url], capture_output=True, text=True, timeout=180).stdout
    finally:
        server.terminate()
        server.wait(30)
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", re.sub(r"<(script|style)[^>]*>.*?</\1>", "", dom, flags=re.S)))
    assert "<title>Runs - Experiment" in dom, text[:1500]  # the runs page, not the GenAI overview
    assert client.get_run(session).info.run_name in text, text[:1500]  # the session run is a row...
    assert "2 matching runs" in text, text[:1500]  # ...with its model's run nested under it
