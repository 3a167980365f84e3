"""The champion: the winner refit on all rows (what is pickled and served), logged as an MLflow model and registered."""

from __future__ import annotations

import importlib
from typing import Any

from raymlx.champion.predictor import ChampionModel, FittedPredictor, ServedPredictor, fit_predictor

__all__ = ["ChampionModel", "FittedPredictor", "ServedPredictor", "fit_predictor", "CHAMPION_ALIAS",
           "Champion", "register_champion", "log_champion", "user_code_paths"]

CHAMPION_ALIAS = "champion"  # the registry alias the served model is found by

# Registration loads the spec, metric and pipeline machinery: only where a champion is registered,
# not in every process that unpickles one (serving replicas, notebooks).
_REGISTRATION = {"Champion", "register_champion", "log_champion", "user_code_paths"}


def __getattr__(name: str) -> Any:
    if name in _REGISTRATION:
        return getattr(importlib.import_module("raymlx.champion.register"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
