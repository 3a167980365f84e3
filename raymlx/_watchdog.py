"""The watchdog process (``python -m raymlx._watchdog PID``), see :class:`raymlx._processes.Watchdog`.

Twice a second it notes the Ray processes descending from PID; ``done`` on its input means PID
ended them itself; end of input without it means PID died, and every process noted is killed.
"""

from __future__ import annotations

import os
import select
import signal
import sys

from raymlx._processes import ray_descendants, reap


def main(driver: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # only the pipe's end ends the watch
    noted: set[tuple[int, int]] = set()
    stdin = sys.stdin.fileno()
    data = b""
    while True:
        noted.update(ray_descendants(driver))
        ready, _, _ = select.select([stdin], [], [], 0.5)
        if not ready:
            continue
        chunk = os.read(stdin, 4096)
        data += chunk
        if b"done" in data:
            return
        if not chunk:  # the driver is gone
            reap(sorted(noted))
            return


if __name__ == "__main__":
    main(int(sys.argv[1]))
