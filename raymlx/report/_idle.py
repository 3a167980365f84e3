"""Imported first by the report's fork server: it, its imports and every process it forks run at the lowest
CPU priority (so matplotlib's, shap's and Optuna's imports yield to Ray's start, the drawing to the trials).

Importing this module lowers the priority of the importing process, and makes it ignore Ctrl-C (SIGINT),
as the fork server does once its imports are done: at the lowest priority they may still run when a
Ctrl-C reaches the whole process group, and would print a traceback. Nothing else imports it.
"""

from __future__ import annotations

import signal

from raymlx.report._priority import lower_priority

__all__: list[str] = []

lower_priority()
signal.signal(signal.SIGINT, signal.SIG_IGN)  # each report process takes Python's handler back (lowest_until)
