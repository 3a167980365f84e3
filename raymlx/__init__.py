"""raymlx: find the best model for your data from one YAML spec, tuned on Ray, tracked in MLflow, served on Ray Serve."""

from __future__ import annotations

from raymlx.api import load_champion, tune, validate

__all__ = ["__version__", "tune", "validate", "load_champion"]

__version__ = "0.1.0"
