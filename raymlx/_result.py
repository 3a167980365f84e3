"""How a trial that raised is reported: as a result that says so, not as a Tune error.

A Tune error costs the worker process (a new one takes seconds to start) and, with
actor reuse, has been seen to leave its CPU reserved so the rest of the run went one
trial at a time. A failed evaluation therefore reports these keys and ends normally.
"""

from __future__ import annotations

import os
import re

__all__ = ["FAILED_KEY", "ERROR_KEY", "NODE_KEY", "PREDICTIONS_KEY", "DRIVER_TRIAL_KEY", "failure_of", "error_summary"]


FAILED_KEY = "trial_failed"   # 1.0 in the result of a trial whose evaluation raised
ERROR_KEY = "trial_error"     # "ValueError: ..." (the last line of its traceback)
NODE_KEY = "node_id"          # the Ray node the trial ran on (kept in Tune's result.json)
# Each fold's predictions of the validation rows, {"y_pred": [array per fold], "proba": [...], "classes": [...]}:
# the best trial's become the report's out-of-fold predictions (no refit); not an MLflow metric.
PREDICTIONS_KEY = "predictions"
# In the configuration of a trial the driver evaluated while Ray started, {"index", "started_ms", "ended_ms"}: the
# trial reports that evaluation's result (see raymlx.head_start); its run keeps the evaluation's times.
DRIVER_TRIAL_KEY = "evaluated_on_driver"


def failure_of(result: dict | None) -> str | None:
    """The error of a failed trial's result, or ``None`` for a trial that scored."""
    if result and result.get(FAILED_KEY):
        return str(result.get(ERROR_KEY, "unknown error"))
    return None


def error_summary(trial) -> str:
    """The last line of a failed trial's traceback, e.g. ``ValueError: Can only dampen the trend component``;
    for a worker process that died (a signal, the OOM killer), which one and Ray's word on how."""
    text = _error_text(trial)
    died = _WORKER_DIED.search(text)
    if died:
        pid = _PID.search(text)
        which = f"worker process {pid.group(1)}" if pid else "worker process"
        return f"{which} died (killed by a signal, out of memory or crashed): {died.group(1).strip()}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "unknown error"


_WORKER_DIED = re.compile(r"worker process has died\.[^\n]*?Worker exit detail: ([^.\n]*)")
_PID = re.compile(r"\bpid[:=] ?(\d+)")


def _error_text(trial) -> str:
    """The trial's error as Tune wrote it: on the driver first (the copy in the experiment's storage
    is synced later, after the callbacks that ask for it have run)."""
    try:
        if trial.error_file and os.path.exists(trial.error_file):
            with open(trial.error_file) as file:
                return file.read()
        return str(trial.get_error() or "")
    except Exception:  # the error file may be gone; the count still says it failed
        return ""
