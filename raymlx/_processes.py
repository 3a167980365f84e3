"""Processes by PID on Linux (``/proc``): who is alive, who descends from whom, and a watchdog that ends them.

A PID alone can be reused by an unrelated process; every PID here travels with the process's
start time (clock ticks since boot, ``/proc/PID/stat`` field 22), and a process counts as the
same only when both match.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

__all__ = ["start_time", "is_alive", "descendants", "driver_id", "driver_alive", "Watchdog", "ray_descendants", "reap"]

_PROC = Path("/proc")
logger = logging.getLogger(__name__)


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or ``None`` when it is gone (or no ``/proc``)."""
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return int(stat.rpartition(")")[2].split()[19])  # field 22; the command name may hold spaces


def is_alive(pid: int, started: int | None) -> bool:
    """Whether the process that had ``pid`` and started at ``started`` still runs (zombies count as gone)."""
    try:
        state = (_PROC / str(pid) / "stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z" and start_time(pid) == started


def descendants(pid: int) -> list[tuple[int, int]]:
    """Every live descendant of a process (children of all its threads), as ``(pid, start time)``."""
    found: list[tuple[int, int]] = []
    queue = [pid]
    while queue:
        parent = queue.pop()
        try:  # a process ending between two reads (Ray's, at its shutdown) takes its /proc entries with it
            tasks = os.listdir(_PROC / str(parent) / "task")
        except OSError:
            continue
        for task in tasks:
            try:
                children = [int(c) for c in (_PROC / str(parent) / "task" / task / "children").read_text().split()]
            except OSError:
                continue
            for child in children:
                started = start_time(child)
                if started is not None:
                    found.append((child, started))
                    queue.append(child)
    return found


def driver_id() -> str:
    """``host:pid:start`` of this process: what a run records to be told apart from a dead one later."""
    return f"{socket.gethostname()}:{os.getpid()}:{start_time(os.getpid())}"


def driver_alive(recorded: str) -> bool | None:
    """Whether the process a :func:`driver_id` names still runs; ``None`` when it ran on another host."""
    host, _, rest = recorded.partition(":")
    pid, _, started = rest.partition(":")
    if host != socket.gethostname():
        return None
    try:
        return is_alive(int(pid), int(started))
    except ValueError:
        return False


class Watchdog:
    """A small process of its own session that ends this process's Ray processes when this one dies.

    Linux ends Ray's node processes with their parent, but not the agents they start (a dashboard
    agent and a runtime-environment agent, re-parented to init and still listening). The watchdog
    notes this process's descendants that are Ray's, twice a second, and holds the read end of a
    pipe; when this process dies, by any signal, the pipe closes and the watchdog kills each process
    it noted that still runs (same PID, same start time). :meth:`close` ends it without killing anything.
    """

    def __init__(self) -> None:
        read, self._write = os.pipe()
        self._process = subprocess.Popen([sys.executable, "-m", "raymlx._watchdog", str(os.getpid())], stdin=read,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                         start_new_session=True)  # a Ctrl-C to the terminal's group spares it
        os.close(read)

    def close(self) -> None:
        """This process has ended its runtime itself: the watchdog leaves without killing; safe to call twice."""
        if self._write < 0:
            return
        try:
            os.write(self._write, b"done\n")
        except BrokenPipeError:  # it has died already (killed): nothing of ours is left for it to end
            logger.warning("the watchdog of this process's Ray processes had ended before them")
        finally:
            os.close(self._write)
            self._write = -1
        self._process.wait()


def ray_descendants(pid: int) -> list[tuple[int, int]]:
    """The descendants of a process that are Ray's (``ray`` on their command line: node processes, agents, workers)."""
    found = []
    for child, started in descendants(pid):
        try:
            command = (_PROC / str(child) / "cmdline").read_bytes()
        except OSError:
            continue
        if b"ray" in command and b"raymlx._watchdog" not in command:
            found.append((child, started))
    return found


def reap(processes: list[tuple[int, int]]) -> None:
    """SIGKILL each process still running with the recorded start time, and its descendants."""
    live = [(pid, started) for pid, started in processes if is_alive(pid, started)]
    for pid, _ in list(live):
        live.extend(descendants(pid))
    for pid, started in live:
        if is_alive(pid, started):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
