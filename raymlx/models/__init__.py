"""Model protocol and the built-in model adapters (named by short name in a spec)."""

from __future__ import annotations

from raymlx.models.base import Model, TrainFunctionModel, build_model, parameter_names

__all__ = ["Model", "TrainFunctionModel", "build_model", "parameter_names"]
