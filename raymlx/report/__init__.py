"""Reports: out-of-fold diagnostics, search plots and explanations per model, logged to MLflow, and one offline HTML file."""

from __future__ import annotations

from raymlx.report.build import load_report, preload, report_after_tune, write_html

__all__ = ["report_after_tune", "load_report", "write_html", "preload"]
