"""Run in a report process by tests: imports nothing beyond what the report's processes hold."""

from __future__ import annotations

import sys

from raymlx.report.collect import Drawn, SectionJob, draw_section

HEAVY = ("mlflow", "ray")


def draw_and_list_heavy_imports(job: SectionJob) -> tuple[Drawn, list[str]]:
    """Draw a section; the top-level packages of :data:`HEAVY` imported in this process by then."""
    drawn = draw_section(job)
    return drawn, sorted({name.partition(".")[0] for name in sys.modules} & set(HEAVY))
