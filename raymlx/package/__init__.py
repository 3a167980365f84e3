"""``raymlx package``: a project's container build context and its scheduled retraining workflow."""

from __future__ import annotations

from raymlx.package._needs import Needs, find_needs
from raymlx.package._package import DEFAULT_BASE_IMAGE, DEFAULT_CRON, Packaged, package_project

__all__ = ["DEFAULT_BASE_IMAGE", "DEFAULT_CRON", "Needs", "Packaged", "find_needs", "package_project"]
