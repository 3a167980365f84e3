"""Reports: out-of-fold diagnostics, search plots and explanations per model, logged to MLflow, and one offline HTML file."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["LiveReport", "report_after_tune", "load_report", "write_html"]

# Where each public name lives: imported when first used, so that the report's fork server can import
# raymlx.report._priority (and lower its priority) before the report's heavy imports.
_HOMES = {"LiveReport": "raymlx.report.live", "report_after_tune": "raymlx.report.live",
          "load_report": "raymlx.report.build", "write_html": "raymlx.report.build"}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
