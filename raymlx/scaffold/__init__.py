"""``raymlx init``: a new project from a template that validates and tunes as it is."""

from __future__ import annotations

from raymlx.scaffold._scaffold import TEMPLATES, plan, project_name, scaffold

__all__ = ["TEMPLATES", "plan", "project_name", "scaffold"]
