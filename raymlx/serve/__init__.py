"""Serving a model raymlx logged: a Ray Serve application with a FastAPI ingress, autoscaling and batching."""

from __future__ import annotations

__all__ = ["ModelRef", "ServedModel", "resolve_model", "Limits", "ServeRequest", "serve_foreground", "detach",
           "stop", "reload"]

from raymlx.serve._process import ServeRequest, detach, reload, serve_foreground, stop
from raymlx.serve.app import Limits
from raymlx.serve.model import ModelRef, ServedModel, resolve_model
