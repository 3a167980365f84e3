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
print(ray.get(ray.remote(lambda: "task ran, malloc " + os.environ.get("MALLOC_MMAP_THRESHOLD_", "as is")).remote()))
shutdown_ray()
for line in children:
    print(line)
"""


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "full"])
def test_a_lean_runtime_starts_no_api_server_nor_monitors_and_runs_tasks(lean):
    """What ``raymlx tune`` starts: the GCS, the raylet (and its agents, workers), none of the Python
    processes a single driver on a fixed-size runtime does not use; Ray's full set otherwise. Its workers
    get a fixed malloc threshold."""
    done = subprocess.run([sys.executable, "-c", _NODE_PROCESSES, "lean" if lean else "full"], capture_output=True,
                          text=True, timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "task ran, malloc 4194304"  # workers free large blocks back to the system at once
    started = "\n".join(lines[1:])
    assert "gcs_server" in started and "raylet" in started
    for unused in ("dashboard/dashboard.py", "autoscaler/_private/monitor.py", "_private/log_monitor.py"):
        assert (unused in started) is not lean, (unused, started)


_FIRST_ACTOR = """
import os, sys, time
from pathlib import Path
import ray
from ray.util.placement_group import placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy
from raymlx._processes import descendants
from raymlx.runtime import TRIAL_MODULES, init_ray, shutdown_ray
from raymlx.spec import RuntimeSpec

def workers():
    found = set()
    for pid, _ in descendants(os.getpid()):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\\0")
            started = command[0].startswith(b"ray::")  # a worker's title once it runs
            if started or b"python" in command[0] and b"default_worker.py" in b" ".join(command):
                found.add(pid)
        except OSError:
            pass
    return found

init_ray(RuntimeSpec(num_cpus=1, object_store_memory_mb=100), base_dir=".", lean=True)
deadline = time.monotonic() + 60
while not workers() and time.monotonic() < deadline:
    time.sleep(0.1)
prestarted = workers()
time.sleep(2.5)  # idle for longer than Ray's default second before it stops an idle worker
group = placement_group([{"CPU": 1}])  # the CPU reserved before the actor is asked for, as Tune does
ray.get(group.ready())
time.sleep(1.5)

@ray.remote(num_cpus=1)
class Trial:
    def __init__(self):
        self.imported = [name for name in TRIAL_MODULES if name in sys.modules]

    def where(self):
        return os.getpid(), self.imported

trial = Trial.options(scheduling_strategy=PlacementGroupSchedulingStrategy(group)).remote()
pid, imported = ray.get(trial.where.remote())
shutdown_ray()
print("prestarted" if pid in prestarted else f"new worker {pid} (prestarted: {sorted(prestarted)})")
print(",".join(imported))
"""


def test_the_first_trial_actor_starts_in_the_prestarted_worker_with_its_modules_imported():
    """A lean runtime's prestarted worker imports what a trial needs as it starts, and is still there when the
    actor comes after its CPU was reserved (Ray stopped it as idle then, and started a new worker that imported
    everything again)."""
    done = subprocess.run([sys.executable, "-c", _FIRST_ACTOR], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    where, imported = done.stdout.splitlines()[-2:]
    assert where == "prestarted"
    from raymlx.runtime import TRIAL_MODULES

    assert imported.split(",") == list(TRIAL_MODULES)
