"""Imported first by the report's fork server: it, its imports and every process it forks run at the lowest
CPU priority (so matplotlib's, shap's and Optuna's imports yield to Ray's start, the drawing to the trials).

Importing this module lowers the priority of the importing process: nothing else imports it.
"""

from __future__ import annotations

from raymlx.report._priority import lower_priority

__all__: list[str] = []

lower_priority()
