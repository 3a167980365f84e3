"""Processes by PID: the descendants of a process whose children keep ending, and the watchdog's end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from raymlx._processes import Watchdog, descendants

CHURN = """
import subprocess, sys
while True:
    children = [subprocess.Popen([sys.executable, '-c', 'import threading, time; '
                                  '[threading.Thread(target=time.sleep, args=(0.01,)).start() for _ in range(4)]'])
                for _ in range(4)]
    [child.wait() for child in children]
"""


def test_descendants_of_a_process_whose_children_keep_ending_are_read_without_error():
    """A child ending between two reads of /proc (Ray's processes at shutdown) must not end the watchdog's scan."""
    churn = subprocess.Popen([sys.executable, "-c", CHURN])
    try:
        seen, end = set(), time.monotonic() + 3
        while time.monotonic() < end:
            seen.update(pid for pid, _ in descendants(churn.pid))
        assert len(seen) > 10  # children came and went while they were read
    finally:
        churn.kill()
        churn.wait()


def test_closing_the_watchdog_once_it_has_died_does_not_fail_the_run():
    watchdog = Watchdog()
    os.kill(watchdog._process.pid, signal.SIGKILL)
    watchdog._process.wait()
    watchdog.close()  # the run goes on to register its champion
    watchdog.close()
