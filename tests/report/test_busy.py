"""The report tells the CPU time other work takes from the time its own run (Ray, the report's processes) takes."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from raymlx.report._busy import ForeignLoad, _tree_ticks

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="reads Linux's /proc")
SPIN = "import time\nend = time.process_time() + {seconds}\nwhile time.process_time() < end: pass"


def _spin(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_work_outside_the_tree_counts_as_other_work():
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        load = ForeignLoad(root=sleeper.pid)  # this process is not in the sleeper's tree
        started, cpu = time.monotonic(), time.process_time()
        _spin(0.6)
        spent = time.process_time() - cpu
        assert load.sample() * (time.monotonic() - started) >= 0.8 * spent - 0.05
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_descendants_cpu_time_is_the_trees_also_once_it_has_ended():
    before = sum(_tree_ticks(os.getpid()).values())
    child = subprocess.run([sys.executable, "-c", SPIN.format(seconds=0.6)], check=True)
    assert child.returncode == 0
    assert (sum(_tree_ticks(os.getpid()).values()) - before) / os.sysconf("SC_CLK_TCK") >= 0.5


LEAVER = """
import subprocess, sys
spinner = subprocess.Popen([sys.executable, "-c", {spin!r} + "\\nimport time\\ntime.sleep(30)"], stdout=subprocess.DEVNULL)
print(spinner.pid, flush=True)
sys.stdin.readline()
"""


def _wait_for_cpu(pid: int, seconds: float) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        if (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK") >= seconds - 0.05:
            time.sleep(0.2)  # past its spin
            return
        time.sleep(0.1)
    raise AssertionError(f"process {pid} did not spin {seconds} s of CPU")


def test_a_process_leaving_the_tree_does_not_read_as_other_work():
    """A trial worker Ray stops, a process re-parented out of the tree: its CPU time was the run's, not other work's.

    Other work (the other test worker, say) can at most keep every core busy; the time of a process that left
    the tree, read as other work's, comes on top of that in a short interval.
    """
    load = ForeignLoad()
    parent = subprocess.Popen([sys.executable, "-c", LEAVER.format(spin=SPIN.format(seconds=1.5))],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    spinner = int(parent.stdout.readline())
    try:
        _wait_for_cpu(spinner, 1.5)  # the grandchild has spun and sleeps
        load.sample()
        parent.communicate("\n")  # its parent ends: it is re-parented out of this tree, with its ticks
        time.sleep(0.2)
        assert load.sample() <= (os.cpu_count() or 1) + 0.05
    finally:
        os.kill(spinner, 9)
