"""Gated promotion: the new winner takes the ``champion`` alias only when it beats the current champion,
rescored on this run's folds and data the same way every candidate was.

The current champion is loaded from the registry, its pipeline refit on each new
fold's training rows and its model (same parameters) refit on their features, then
scored on the fold's validation rows with this run's metric. An equal score passes
with ``metric_margin: 0`` (the same configuration refit on newer data replaces the
old fit); a worse one becomes the ``challenger``.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from raymlx.champion import CHAMPION_ALIAS
from raymlx.champion.predictor import ChampionModel, FittedPredictor
from raymlx.folds import Fold
from raymlx.metrics import Metric, score
from raymlx.pipeline import fold_features
from raymlx.spec import Spec

__all__ = ["CHALLENGER_ALIAS", "CurrentChampion", "Decision", "current_champion", "rescore", "decide",
           "score_current", "write_decision"]

CHALLENGER_ALIAS = "challenger"


@dataclass(frozen=True)
class CurrentChampion:
    """The version the ``champion`` alias names before this run, and its score on this run's folds."""

    version: str
    model: str | None
    score: float
    score_std: float
    error: str | None = None  # why it could not be scored on this run's folds


@dataclass(frozen=True)
class Decision:
    """Whether the new winner takes the ``champion`` alias, and why (both scores, in words)."""

    promote: bool
    reason: str
    current: CurrentChampion | None = None

    @property
    def alias(self) -> str:
        return CHAMPION_ALIAS if self.promote else CHALLENGER_ALIAS


def current_champion(client: MlflowClient, registered_model: str) -> tuple[str, FittedPredictor, str | None] | None:
    """The version the alias names now, its fitted predictor and its model's name; ``None`` when there is none."""
    try:
        version = client.get_model_version_by_alias(registered_model, CHAMPION_ALIAS)
    except MlflowException:
        return None  # no registered model or no alias yet: the first champion
    import mlflow

    python_model = mlflow.pyfunc.load_model(f"models:/{registered_model}/{version.version}").unwrap_python_model()
    if not isinstance(python_model, ChampionModel):
        return None  # someone else's model under this name: nothing raymlx can refit
    return str(version.version), python_model.predictor, python_model.metadata.get("model")


def rescore(predictor: FittedPredictor, frame: pd.DataFrame, folds: list[Fold], *, spec: Spec,
            metric: Metric) -> list[float]:
    """The champion's pipeline and model, refit on each fold's training rows and scored on its window.

    Raises:
        Exception: Whatever the old champion raises on the new data (a column it needs is gone, ...).
    """
    pipeline = predictor.pipeline_unfitted or predictor.pipeline  # fitting a fitted pipeline refits a copy
    scores = []
    for fold in folds:
        data = fold_features(frame, fold, pipeline, target=spec.data.target, forecasting=spec.task == "forecasting",
                             future_columns=spec.data.future_columns)
        model = copy.deepcopy(predictor.model)
        model.fit(data.X_train, data.y_train)
        scores.append(score(metric, model, data.X_valid, data.y_valid))
    return scores


def decide(new_score: float, current: CurrentChampion | None, *, metric: Metric, margin: float,
           force: bool = False) -> Decision:
    """Promote when there is no champion, when forced, or when the new score improves on the champion's by ``margin``."""
    if current is None:
        return Decision(True, "first champion")
    ours, theirs = f"{metric.name} {new_score:.4g}", f"{current.score:.4g}"
    if force:
        return Decision(True, f"promoted by --force-promote ({ours}; champion version {current.version}: {theirs})",
                        current)
    if math.isnan(current.score):
        return Decision(True, f"champion version {current.version} could not be scored on this run's folds "
                              f"({current.error})", current)
    gain = (current.score - new_score) if metric.mode == "min" else (new_score - current.score)
    if gain >= margin:
        return Decision(True, f"{ours} against {theirs} for champion version {current.version} on this run's folds",
                        current)
    return Decision(False, f"{ours} does not beat {theirs} of champion version {current.version} on this run's folds"
                           f"{f' by the margin {margin:g}' if margin else ''}", current)


def score_current(client: MlflowClient, registered_model: str, frame: pd.DataFrame, folds: list[Fold], *,
                  spec: Spec, metric: Metric) -> CurrentChampion | None:
    """The current champion rescored on this run's folds, or ``None`` when there is no champion yet.

    A champion that fails on the new data (a column it needs is gone) gets a NaN score: it cannot hold the alias.
    """
    found = current_champion(client, registered_model)
    if found is None:
        return None
    version, predictor, model = found
    try:
        scores = rescore(predictor, frame, folds, spec=spec, metric=metric)
    except Exception as exc:  # noqa: BLE001 - the old champion cannot run on the new data: it cannot hold the alias
        return CurrentChampion(version, model, math.nan, math.nan, f"{type(exc).__name__}: {exc}")
    return CurrentChampion(version, model, float(np.mean(scores)), float(np.std(scores)))


def write_decision(path: str | Path, *, promoted: bool, version: str, model_uri: str, reason: str) -> None:
    """Append the gate's decision to ``path`` as ``key=value`` lines, the format of GitHub Actions' ``$GITHUB_OUTPUT``.

    Keys: ``promoted`` (``true``/``false``), ``version`` (the version this run registered), ``alias``
    (``champion`` or ``challenger``), ``model_uri`` (its alias URI) and ``reason`` (both scores, in words).
    A later step reads them, e.g. to reload the served model only after a promotion.
    """
    values = {"promoted": str(promoted).lower(), "version": version,
              "alias": CHAMPION_ALIAS if promoted else CHALLENGER_ALIAS, "model_uri": model_uri,
              "reason": " ".join(reason.split())}  # one line each
    with open(path, "a", encoding="utf-8") as file:
        file.writelines(f"{key}={value}\n" for key, value in values.items())
