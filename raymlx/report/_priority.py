"""The report's processes draw with the CPU time Tune leaves idle: they run at the lowest CPU priority.

Ray runs its workers at niceness 15: a report process at the default priority would outweigh a trial
about thirty to one on a busy core, and the trials would wait for the report.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

__all__ = ["lower_priority", "priority_of", "LOWEST_NICENESS"]

logger = logging.getLogger(__name__)
LOWEST_NICENESS = 19


def _threads() -> list[int]:
    """This process's threads (on Linux a scheduling policy and a niceness belong to each thread)."""
    tasks = Path("/proc/self/task")
    return [int(t.name) for t in tasks.iterdir()] if tasks.is_dir() else [0]


def lower_priority() -> str:
    """Run every thread of this process, and what it starts or forks later, at the lowest CPU priority there is.

    Linux's ``SCHED_IDLE`` policy where the system has it (a thread runs only when no other wants the core),
    otherwise the highest niceness.

    Returns:
        What is in force now: see :func:`priority_of`.
    """
    for thread in _threads():
        try:
            if hasattr(os, "SCHED_IDLE"):
                os.sched_setscheduler(thread, os.SCHED_IDLE, os.sched_param(0))
            os.setpriority(os.PRIO_PROCESS, thread, LOWEST_NICENESS)
        except (OSError, AttributeError):  # a thread that just ended; a system without these calls
            logger.debug("cannot lower the priority of thread %s", thread, exc_info=True)
    return priority_of(0)


def priority_of(pid: int) -> str:
    """A process's CPU priority as ``"idle, nice 19"`` (its scheduling policy when it is ``SCHED_IDLE``)."""
    policy = os.sched_getscheduler(pid) if hasattr(os, "sched_getscheduler") else None
    nice = os.getpriority(os.PRIO_PROCESS, pid) if hasattr(os, "getpriority") else 0
    return ("idle, " if policy is not None and policy == getattr(os, "SCHED_IDLE", None) else "") + f"nice {nice}"

