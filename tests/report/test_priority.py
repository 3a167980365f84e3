"""The report's processes take the CPU time Tune leaves idle, and their own priority back once Tune has ended."""

from __future__ import annotations

import gc
import os
import resource
import time

import pytest

from raymlx.report._priority import LOWEST_NICENESS, priority_of
from raymlx.report.live import _pool

pytestmark = pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")


def _may_raise_priority() -> bool:
    """Whether this process could raise a priority it lowered (root, or RLIMIT_NICE allowing its niceness)."""
    return os.geteuid() == 0 or 20 - os.getpriority(os.PRIO_PROCESS, 0) <= resource.getrlimit(resource.RLIMIT_NICE)[0]


def test_report_processes_run_at_the_lowest_priority_until_tune_ends():
    driver = priority_of(0)
    pool, tuned = _pool()
    try:
        assert pool.submit(priority_of, 0).result(timeout=120) == f"idle, nice {LOWEST_NICENESS}"
        tuned.set()
        deadline, now = time.monotonic() + 30, None
        while time.monotonic() < deadline:  # each process's own thread restores it when the event comes
            now = pool.submit(priority_of, 0).result(timeout=60)
            if not now.startswith("idle"):
                break
            time.sleep(0.05)
        assert now == (driver if _may_raise_priority() else f"idle, nice {LOWEST_NICENESS}")
    finally:
        pool.shutdown()
    assert priority_of(0) == driver  # the driver never lowered its own


def test_report_processes_leave_the_imports_objects_out_of_the_garbage_collectors_scans():
    pool, tuned = _pool()
    try:  # matplotlib's, shap's, MLflow's objects: hundreds of thousands
        assert pool.submit(gc.get_freeze_count).result(timeout=120) > 100_000
    finally:
        tuned.set()
        pool.shutdown()
