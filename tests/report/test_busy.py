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
    before = _tree_ticks(os.getpid())
    child = subprocess.run([sys.executable, "-c", SPIN.format(seconds=0.6)], check=True)
    assert child.returncode == 0
    assert (_tree_ticks(os.getpid()) - before) / os.sysconf("SC_CLK_TCK") >= 0.5
