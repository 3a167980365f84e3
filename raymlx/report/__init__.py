"""Reports: out-of-fold diagnostics, search plots and explanations per model, logged to MLflow, and one offline HTML file."""

from __future__ import annotations

from raymlx.report.build import load_report, write_html
from raymlx.report.live import LiveReport, report_after_tune

__all__ = ["LiveReport", "report_after_tune", "load_report", "write_html"]
