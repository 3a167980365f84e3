"""What raymlx adds to a spec before tuning: the experiment's seed on every seeded model, and the baseline.

* Seed: a model (estimator class, train function, factory) that takes ``random_state``,
  ``seed`` or ``random_seed`` gets ``validation.seed`` unless the spec sets that
  parameter, so the same spec gives the same leaderboard.
* Baseline: one more model entry, scored on the same folds as the others: the mean
  (``DummyRegressor``), the majority class with the class shares as probabilities
  (``DummyClassifier(strategy="prior")``) or the seasonal naive forecast with the best
  of a few season lengths that every fold's training part holds.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from raymlx.folds import Fold
from raymlx.models.base import MODEL_PACKAGE, seed_parameter
from raymlx.registry import UnresolvedReference, resolve
from raymlx.spec import ModelSpec, SearchSpec, Spec
from raymlx.spec_io import LoadedSpec

__all__ = ["prepare", "with_seeds", "baseline_name", "baseline_entry", "SEASON_LENGTHS"]

SEASON_LENGTHS = (1, 7, 12, 24, 52, 365)  # hourly-daily, weekly, monthly, daily-hourly, weekly-yearly, daily-yearly


def with_seeds(spec: Spec, base_dir: str) -> dict[str, ModelSpec]:
    """Each model entry with the experiment's seed among its fixed parameters, where it takes one and the spec
    does not set it."""
    models = {}
    for name, model in spec.models.items():
        try:
            param = seed_parameter(resolve(model.model, base_dir=base_dir, default_package=MODEL_PACKAGE))
        except UnresolvedReference:
            param = None
        if param is None or param in model.params or param in model.search.space:
            models[name] = model
        else:
            models[name] = model.model_copy(update={"params": {**model.params, param: spec.validation.seed}})
    return models


def baseline_name(spec: Spec) -> str:
    """The automatic baseline's name on the board: ``baseline``, unless the spec names a model so."""
    return "baseline" if "baseline" not in spec.models else "auto_baseline"


def baseline_entry(spec: Spec, folds: list[Fold]) -> ModelSpec:
    """The baseline's model entry for the spec's task, sized to its folds."""
    if spec.task == "regression":
        return ModelSpec(model="sklearn.dummy:DummyRegressor", params={"strategy": "mean"})
    if spec.task == "classification":
        return ModelSpec(model="sklearn.dummy:DummyClassifier", params={"strategy": "prior"})
    shortest = min(len(f.train) for f in folds)
    seasons: list[Any] = [s for s in SEASON_LENGTHS if s <= shortest] or [1]
    search = SearchSpec(algorithm="grid", num_samples=len(seasons),
                        space={"season_length": {"type": "choice", "values": seasons}})
    return ModelSpec(model="NaiveSeasonal", search=search)


def _listed(spec: Spec, entry: ModelSpec, base_dir: str) -> str | None:
    """The spec's own model entry that is the baseline's model with its settings (``model: NaiveSeasonal``), if any."""
    target = resolve(entry.model, default_package=MODEL_PACKAGE)
    for name, model in spec.models.items():
        try:
            same = resolve(model.model, base_dir=base_dir, default_package=MODEL_PACKAGE) is target
        except UnresolvedReference:
            continue
        if same and all(model.params.get(key, value) == value for key, value in entry.params.items()):
            return name
    return None


def prepare(loaded: LoadedSpec, folds: list[Fold]) -> tuple[LoadedSpec, str | None]:
    """The spec as tuned: seeds filled in and the baseline added (unless the spec turns it off).

    A spec that lists the baseline's model itself (a ``NaiveSeasonal`` entry) has that entry
    marked as the baseline instead of a second one added.

    Returns:
        The prepared spec and the baseline's model name (``None`` without one).
    """
    spec = loaded.spec
    models = with_seeds(spec, loaded.base_dir)
    baseline = None
    if spec.baseline_spec.enabled:
        entry = baseline_entry(spec, folds)
        baseline = _listed(spec, entry, loaded.base_dir)
        if baseline is None:
            baseline = baseline_name(spec)
            models[baseline] = entry
    return dataclasses.replace(loaded, spec=spec.model_copy(update={"models": models})), baseline
