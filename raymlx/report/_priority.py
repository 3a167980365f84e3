"""The report's processes draw with the CPU time Tune leaves idle: they run at the lowest CPU priority while
Tune runs, and at their own again once it has ended, where the system lets a process raise its priority.

Ray runs its workers at niceness 15: a report process at the default priority would outweigh a trial
about thirty to one on a busy core, and the trials would wait for the report.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path

__all__ = ["lower_priority", "restore_priority", "give_mine", "lowest_until", "priority_of", "LOWEST_NICENESS"]

logger = logging.getLogger(__name__)
LOWEST_NICENESS = 19
_before: dict[str, int] = {}  # the process's policy and niceness before it lowered them (inherited by forks)


def _threads(pid: int | None = None) -> list[int]:
    """A process's threads, this one's by default (on Linux a scheduling policy and a niceness belong to each thread)."""
    tasks = Path(f"/proc/{pid or 'self'}/task")
    return [int(t.name) for t in tasks.iterdir()] if tasks.is_dir() else [pid or 0]


def _set_all(policy: int | None, nice: int, pid: int | None = None) -> bool:
    """Give every thread of a process (this one by default) a scheduling policy (``None``: keep it) and a niceness;
    whether all took."""
    done = True
    for thread in _threads(pid):
        try:
            if policy is not None:
                os.sched_setscheduler(thread, policy, os.sched_param(0))
            os.setpriority(os.PRIO_PROCESS, thread, nice)
        except (OSError, AttributeError):  # not permitted, a thread that just ended, a system without these calls
            logger.debug("cannot set the priority of thread %s", thread, exc_info=True)
            done = False
    return done


def lower_priority() -> str:
    """Run every thread of this process, and what it starts or forks later, at the lowest CPU priority there is.

    Linux's ``SCHED_IDLE`` policy where the system has it (a thread runs only when no other wants the core),
    otherwise the highest niceness.

    Returns:
        What is in force now: see :func:`priority_of`.
    """
    if not _before and hasattr(os, "getpriority"):
        _before.update(nice=os.getpriority(os.PRIO_PROCESS, 0),
                       policy=os.sched_getscheduler(0) if hasattr(os, "sched_getscheduler") else -1)
    _set_all(getattr(os, "SCHED_IDLE", None), LOWEST_NICENESS)
    return priority_of(0)


def restore_priority() -> str:
    """Back to the priority this process had before :func:`lower_priority`, where the system allows it (raising a
    priority takes privileges, CAP_SYS_NICE or RLIMIT_NICE on Linux; without them it stays the lowest).

    Returns:
        What is in force now: see :func:`priority_of`.
    """
    if _before and not _set_all(_before["policy"] if _before["policy"] >= 0 else None, _before["nice"]):
        logger.debug("the report's process keeps the lowest priority: raising it back is not permitted")
    return priority_of(0)


def give_mine(pid: int) -> str:
    """Give another process (every thread of it) this process's priority, where the system lets it be raised.

    Returns:
        What is in force there now: see :func:`priority_of`.
    """
    policy = os.sched_getscheduler(0) if hasattr(os, "sched_getscheduler") else None
    if hasattr(os, "getpriority") and not _set_all(policy, os.getpriority(os.PRIO_PROCESS, 0), pid):
        logger.debug("process %s keeps its priority: raising it is not permitted", pid)
    return priority_of(pid)


def lowest_until(ended) -> None:
    """Lower this process's priority until ``ended`` (an event) is set, then restore it (in a thread of its own).

    The initializer of each report process: Tune's end is when nothing is left for the report to yield to.
    A Ctrl-C interrupts the process again (the fork server it comes from ignores it).
    """
    signal.signal(signal.SIGINT, signal.default_int_handler)
    lower_priority()
    threading.Thread(target=lambda: ended.wait() and restore_priority(), name="raymlx-priority", daemon=True).start()


def priority_of(pid: int) -> str:
    """A process's CPU priority as ``"idle, nice 19"`` (its scheduling policy when it is ``SCHED_IDLE``)."""
    policy = os.sched_getscheduler(pid) if hasattr(os, "sched_getscheduler") else None
    nice = os.getpriority(os.PRIO_PROCESS, pid) if hasattr(os, "getpriority") else 0
    return ("idle, " if policy is not None and policy == getattr(os, "SCHED_IDLE", None) else "") + f"nice {nice}"
