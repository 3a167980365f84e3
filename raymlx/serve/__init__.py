"""Serving a model raymlx logged: a Ray Serve application with a FastAPI ingress, autoscaling and batching."""

from __future__ import annotations

__all__ = ["ModelRef", "ServedModel", "resolve_model", "Limits"]

from raymlx.serve.app import Limits
from raymlx.serve.model import ModelRef, ServedModel, resolve_model
