"""Whether other work keeps the machine busy: the CPU time spent outside this process and its descendants (Ray's
processes, the report's), read from Linux's /proc.

At the lowest priority the report draws with the CPU time Tune leaves idle; on a machine that other work keeps
busy there is none, and the report would wait for the end of tuning to start. Its processes then take their
priority back early instead (:func:`watch`).
"""

from __future__ import annotations

import logging
import os
from collections import deque
from pathlib import Path

from raymlx._processes import descendants

__all__ = ["ForeignLoad", "watch", "BUSY_CORES"]

logger = logging.getLogger(__name__)
BUSY_CORES = 0.5  # other work using at least this many cores on average over the window: the machine is busy
PROC = Path("/proc")


def _busy_ticks() -> int:
    """Clock ticks every CPU has spent busy since boot (user, nice, system, irq, softirq, steal)."""
    fields = [int(v) for v in (PROC / "stat").read_text().split("\n", 1)[0].split()[1:9]]
    return sum(fields) - fields[3] - fields[4]  # less idle and iowait


def _tree_ticks(root: int) -> dict[int, int]:
    """Clock ticks spent by ``root`` and each of its descendants (with the descendants each has waited for), by PID."""
    ticks = {}
    for pid in [root, *(child for child, _ in descendants(root))]:
        try:
            fields = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # a process that just ended
            continue
        ticks[pid] = sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    return ticks


def _grown(before: dict[int, int], now: dict[int, int]) -> int:
    """Ticks the tree spent between two readings: what each process present now added (all of it when new).

    A process gone since (ended, or moved out of the tree) takes its ticks with it: counting by process keeps
    that from reading as time the rest of the machine spent.
    """
    return sum(max(0, ticks - before.get(pid, 0)) for pid, ticks in now.items())


class ForeignLoad:
    """Cores that work outside this process's tree used between one :meth:`sample` and the next."""

    def __init__(self, root: int | None = None) -> None:
        self.root = root or os.getpid()
        self.hertz = os.sysconf("SC_CLK_TCK")
        self._last = self._now()

    def _now(self) -> tuple[float, int, dict[int, int]]:
        return os.times().elapsed, _busy_ticks(), _tree_ticks(self.root)

    def sample(self) -> float:
        """Cores the rest of the machine used on average since the last sample (or since this was made)."""
        now = self._now()
        (then, busy, ours), self._last = self._last, now
        seconds = max(now[0] - then, 1e-3)
        return max(0.0, (now[1] - busy) - _grown(ours, now[2])) / self.hertz / seconds


def watch(busy, *, every: float = 2.0, window: int = 3, cores: float = BUSY_CORES) -> bool:
    """Set the event ``busy`` once other work has used ``cores`` or more over the last ``window`` samples;
    return when it is set (by this or by anyone else): whether this set it. Nothing happens where /proc is missing.

    Args:
        busy: The event the report's processes wait for to take their priority back.
        every: Seconds between samples.
        window: Samples averaged.
        cores: Cores of other work that make the machine busy.
    """
    try:
        load = ForeignLoad()
    except (OSError, ValueError, IndexError):
        return False  # not Linux
    recent: deque[float] = deque(maxlen=window)
    while not busy.wait(every):
        try:
            recent.append(load.sample())
        except (OSError, ValueError, IndexError):
            return False
        if len(recent) == window and sum(recent) / window >= cores:
            logger.info("other work keeps %.1f cores busy: the report takes its own CPU priority back",
                        sum(recent) / window)
            busy.set()
            return True
    return False
