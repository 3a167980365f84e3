"""The local runtime raymlx starts: how it learns that its node is up, and which processes it starts
(guarded private Ray APIs, see raymlx._compat)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from raymlx._compat import _wait_for_node


@pytest.fixture
def asks(monkeypatch) -> list[float]:
    """When raymlx asked the real GCS for its nodes (a counting wrapper around Ray's own client)."""
    import ray._raylet

    real, asked = ray._raylet.GcsClient, []

    class CountingGcsClient:
        def __init__(self, **kwargs) -> None:
            self._client = real(**kwargs)

        def get_all_node_info(self, **kwargs):
            asked.append(time.monotonic())
            return self._client.get_all_node_info(**kwargs)

    monkeypatch.setattr(ray._raylet, "GcsClient", CountingGcsClient)
    return asked


def test_a_registered_node_is_found_at_once(ray_runtime, asks):
    context = ray_runtime.get_runtime_context()
    _wait_for_node(context.gcs_address, context.get_node_id(), timeout_s=30)
    assert len(asks) == 1  # one ask, no sleep: Ray's own wait would sleep a second before asking again


def test_an_unknown_node_is_waited_for_until_the_timeout(ray_runtime, asks):
    context = ray_runtime.get_runtime_context()
    started = time.monotonic()
    _wait_for_node(context.gcs_address, "ab" * 28, timeout_s=3.0)
    waited = time.monotonic() - started
    assert len(asks) >= 2  # asked again (each ask gives up after 1 s), not once
    assert waited >= 3.0  # until the timeout
    # And no longer than its last ask (1 s at most) past it; 10 s more is slack for a loaded machine
    # (measured at a load average of 17 on 2 cores: 0.05 s past the timeout at most).
    assert waited < 3.0 + 1.0 + 10.0


_NODE_PROCESSES = """
import os, sys
from pathlib import Path
import ray
from raymlx.runtime import init_ray, shutdown_ray
from raymlx.spec import RuntimeSpec

init_ray(RuntimeSpec(num_cpus=1, object_store_memory_mb=100), base_dir=".", lean=sys.argv[1] == "lean")
children = []
for entry in Path("/proc").iterdir():
    if entry.name.isdigit():
        try:
            if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == os.getpid():
                children.append((entry / "cmdline").read_text().replace("\\0", " "))
        except (OSError, IndexError, ValueError):
            pass
print(ray.get(ray.remote(lambda: "task ran").remote()))
shutdown_ray()
for line in children:
    print(line)
"""


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "full"])
def test_a_lean_runtime_starts_no_api_server_nor_monitors_and_runs_tasks(lean):
    """What ``raymlx tune`` starts: the GCS, the raylet (and its agents, workers), none of the Python
    processes a single driver on a fixed-size runtime does not use; Ray's full set otherwise."""
    done = subprocess.run([sys.executable, "-c", _NODE_PROCESSES, "lean" if lean else "full"], capture_output=True,
                          text=True, timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "task ran"
    started = "\n".join(lines[1:])
    assert "gcs_server" in started and "raylet" in started
    for unused in ("dashboard/dashboard.py", "autoscaler/_private/monitor.py", "_private/log_monitor.py"):
        assert (unused in started) is not lean, (unused, started)
