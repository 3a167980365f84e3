"""``raymlx serve`` as a user runs it: --detach, --reload and --stop on a real server process of its own."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import httpx
import pytest
from sklearn.linear_model import Ridge
from typer.testing import CliRunner

from raymlx.cli import app
from raymlx.serve._control import _free_port
from tests.listening import descendants, exposed, listening
from tests.serve.conftest import TARGET, register, tabular


def raymlx(*args: str, env: dict, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "raymlx.cli", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYMLX_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_detach_reload_stop(store, diabetes, home):
    register(store, "cli", tabular(diabetes, Ridge(alpha=1.0)), diabetes.drop(columns=[TARGET]).head(5))
    port = _free_port("127.0.0.1")
    env = {"RAYMLX_HOME": str(home)}
    started = raymlx("serve", "--model", "models:/cli@champion", "--tracking-uri", store,
                     "--set", f"serve.port={port}", "--set", "serve.autoscaling.max_replicas=1", "--detach", env=env)
    assert started.returncode == 0, started.stderr[-2000:]
    url = f"http://127.0.0.1:{port}"
    assert f"serving version 1 at {url}" in started.stdout
    pid = json.loads((home / "serve" / f"{port}.json").read_text())["pid"]
    try:
        assert httpx.get(url + "/metadata").json()["version"] == "1"
        server = descendants(pid)  # Ray's processes, Serve's and the relay: loopback only
        assert {"gcs_server", "raylet", "ray::ServeRepli"} <= {name for _, name, _ in listening(server)}
        assert exposed(server) == []
        register(store, "cli", tabular(diabetes, Ridge(alpha=5.0)), diabetes.drop(columns=[TARGET]).head(5))
        reloaded = raymlx("serve", "--reload", env=env)
        assert reloaded.returncode == 0, reloaded.stderr[-2000:]
        assert f"now serving version 2 at {url}" in reloaded.stdout
        assert httpx.get(url + "/metadata").json()["version"] == "2"
        stopped = raymlx("serve", "--stop", env=env)
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
])
def test_bad_input_exits_2_with_a_message(args, message, home, tmp_path):
    result = CliRunner().invoke(app, [a.replace("{tmp}", str(tmp_path)) for a in args])
    assert result.exit_code == 2, result.output
    assert message in result.output
