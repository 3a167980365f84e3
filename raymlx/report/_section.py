"""What a report holds, independent of where it came from (a run that just ended, or MLflow)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Chart", "Section", "Report", "SECTION_FILE", "SUMMARY_FILE", "OOF_FILE", "SHAP_FILE", "GROUPS"]

SECTION_FILE = "report/section.json"   # on each model's run: its notes and the charts in order
SUMMARY_FILE = "report/summary.json"   # on the session run: data, folds, versions, champion
OOF_FILE = "oof/predictions.parquet"   # on each model's run: its best trial's out-of-fold predictions
SHAP_FILE = "explain/shap_values.parquet"  # and the SHAP values of its explanations
Group = Literal["search", "diagnostics", "explanations", "overview"]
GROUPS: tuple[Group, ...] = ("search", "diagnostics", "explanations")


@dataclass
class Chart:
    """One PNG chart, stored in MLflow at ``path`` on its run."""

    path: str
    title: str
    group: Group
    png: bytes = field(default=b"", repr=False)

    def meta(self) -> dict[str, str]:
        return {"path": self.path, "title": self.title, "group": self.group}


@dataclass
class Section:
    """One model's part of the report: its charts, in order, and what the charts cannot say."""

    name: str
    run_id: str
    charts: list[Chart] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    def meta(self) -> dict[str, Any]:
        return {"name": self.name, "notes": self.notes, "facts": self.facts,
                "charts": [c.meta() for c in self.charts]}


@dataclass
class Report:
    """A whole session: summary, leaderboard, overview charts and one section per model."""

    title: str
    summary: dict[str, Any]
    leaderboard: list[dict[str, Any]]
    overview: list[Chart]
    sections: list[Section]
