"""The built-in model adapters, named by short name in a spec; the protocol lives in :mod:`raymlx.models.base`."""

from __future__ import annotations

import importlib
from typing import Any

# Exactly the short names a spec may use (`model: Prophet`).
__all__ = ["NaiveSeasonal", "Prophet", "DartsModel", "ExponentialSmoothing", "Theta", "LinearRegressionModel"]

# Adapters load on first use, so that importing raymlx.models (every worker does) stays fast;
# their optional dependencies (prophet, darts) load later still, when a model is fitted.
_ADAPTERS = {
    "NaiveSeasonal": "raymlx.models.naive",
    "Prophet": "raymlx.models.prophet",
    "DartsModel": "raymlx.models.darts",
    "ExponentialSmoothing": "raymlx.models.darts",
    "Theta": "raymlx.models.darts",
    "LinearRegressionModel": "raymlx.models.darts",
}


def __getattr__(name: str) -> Any:
    if name in _ADAPTERS:
        return getattr(importlib.import_module(_ADAPTERS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return list(__all__)
