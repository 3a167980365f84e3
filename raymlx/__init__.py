"""raymlx: find the best model for your data from one YAML spec, tuned on Ray, tracked in MLflow, served on Ray Serve."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
