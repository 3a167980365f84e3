"""The Tune trainable: fit one configuration on every fold, score it, report."""

from __future__ import annotations

import functools
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import ray
from ray import tune
from threadpoolctl import ThreadpoolController

from raymlx._result import DRIVER_TRIAL_KEY, ERROR_KEY, FAILED_KEY, NODE_KEY, PREDICTIONS_KEY
from raymlx.metrics import get_metric, predict_for, score_predictions
from raymlx.models.base import MODEL_PACKAGE, build_model
from raymlx.pipeline import FoldData
from raymlx.registry import resolve

__all__ = ["ModelPlan", "TrialContext", "evaluate", "attempt", "run_trial", "fold_metric_key", "std_metric_key"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelPlan:
    """What a worker needs to build one model entry: references travel as text and resolve there."""

    reference: str
    pipeline: str | None
    params: dict[str, Any] = field(default_factory=dict)
    max_failures: int = 0


@dataclass(frozen=True)
class TrialContext:
    """Everything a trial reads, put in the object store once for all trials.

    ``folds`` holds each pipeline's features for every fold, computed once: a fold's
    :class:`~raymlx.pipeline.FoldData`, or a reference to it in Ray's object store, where every trial
    reads it in place (one fold at a time). With ``results_on_driver``, a trial given a configuration the
    driver evaluated (see :mod:`raymlx.head_start`) fits nothing: the driver puts that result in its report.
    ``keep_predictions``: whether trials report their predictions of the validation rows (the report's
    out-of-fold predictions; a classifier's probabilities are a second pass over the rows, as long as its
    fit on cheap models).
    """

    models: dict[str, ModelPlan]
    folds: dict[str | None, list[FoldData | ray.ObjectRef]]
    metric_name: str
    metric_mode: Literal["min", "max"]
    base_dir: str
    results_on_driver: bool = False
    keep_predictions: bool = True


def std_metric_key(metric: str) -> str:
    return f"{metric}_std"


def fold_metric_key(metric: str, index: int) -> str:
    return f"{metric}_fold{index}"


def evaluate(context: TrialContext, model_name: str, params: dict[str, Any]) -> dict[str, Any]:
    """Fit and score one configuration on every fold.

    Returns:
        The mean score under the metric's name, its spread, each fold's score and fit time, and
        (with ``context.keep_predictions``) each fold's predictions under ``PREDICTIONS_KEY`` (the
        report's out-of-fold predictions).
    """
    plan = context.models[model_name]
    reference = resolve(plan.reference, base_dir=context.base_dir, default_package=MODEL_PACKAGE)
    metric = get_metric(context.metric_name, context.metric_mode, base_dir=context.base_dir)
    scores, started = [], time.perf_counter()
    kept: dict[str, Any] = {}
    for shared in context.folds[plan.pipeline]:
        fold = ray.get(shared) if isinstance(shared, ray.ObjectRef) else shared
        model = build_model(reference, {**plan.params, **params})
        model.fit(fold.X_train, fold.y_train)
        predicted = predict_for(metric, model, fold.X_valid)
        labels = getattr(model, "classes_", None)
        scores.append(score_predictions(metric, predicted, fold.y_valid, labels=labels))
        if context.keep_predictions:
            _keep(kept, model, metric, predicted, fold.X_valid)
        del fold, model  # the object store may release this fold before the next one is read
    result: dict[str, Any] = {metric.name: float(np.mean(scores)),
                              std_metric_key(metric.name): float(np.std(scores)),
                              "fit_time_s": time.perf_counter() - started}
    if context.keep_predictions:
        result[PREDICTIONS_KEY] = kept
    result.update({fold_metric_key(metric.name, i): s for i, s in enumerate(scores)})
    return result


def _keep(kept: dict, model: Any, metric, predicted: np.ndarray, X) -> None:
    """Add one fold's predictions (and a classifier's probabilities) to ``kept``, reusing what the metric scored.

    Kept as arrays, not lists: Tune writes the best trials' results into its experiment state, where a list
    of a million floats takes a second of the driver to encode (an array, a sixth of that).
    """
    classes = getattr(model, "classes_", None)
    if classes is None:
        kept.setdefault("y_pred", []).append(np.asarray(predicted))
        return
    proba = predicted if metric.needs_proba else (
        np.asarray(model.predict_proba(X)) if callable(getattr(model, "predict_proba", None)) else None)
    labels = np.asarray(classes)[predicted.argmax(axis=1)] if metric.needs_proba else predicted
    kept.setdefault("y_pred", []).append(np.asarray(labels))
    kept["classes"] = np.asarray(classes).tolist()
    if proba is not None:
        kept.setdefault("proba", []).append(np.asarray(proba))


def attempt(context: TrialContext, model_name: str, params: dict[str, Any]) -> dict[str, Any]:
    """:func:`evaluate`, retried up to the model's ``max_failures``; a configuration that still raises gives a
    failed result (see :mod:`raymlx._result`)."""
    plan = context.models[model_name]
    for attempt_no in range(plan.max_failures + 1):
        try:
            return evaluate(context, model_name, params)
        except Exception as exc:
            logger.warning("trial of %s failed (attempt %d of %d)", model_name, attempt_no + 1,
                           plan.max_failures + 1, exc_info=True)
            failed = {FAILED_KEY: 1.0, ERROR_KEY: f"{type(exc).__name__}: {exc}"}
    return failed


@functools.cache
def _thread_pools() -> ThreadpoolController:
    return ThreadpoolController()  # finds the loaded libraries once (14 ms); limiting them then takes 0.1 ms


def _threads(wanted: str | None) -> None:
    """Give the numerical libraries already loaded (BLAS, OpenMP) the threads Ray gives this worker's tasks.

    Ray sets ``OMP_NUM_THREADS`` to a task's CPUs before its first task, and a library loaded after that
    reads it; a worker that imported scikit-learn as it started (see :data:`raymlx.runtime.TRIAL_MODULES`)
    loaded them before, with a thread per core: two trial workers on 2 cores ran 4 threads each, and the
    cheap-trial runs spent 2 to 4 CPU-seconds more. OpenMP's count belongs to the calling thread, and Tune
    runs each trial in a thread of its own: called at every trial's start.
    """
    if wanted and wanted.isdigit():
        _thread_pools().limit(limits=int(wanted))


def run_trial(config: dict[str, Any], context: TrialContext) -> None:
    """Tune entry point: :func:`attempt` the configuration and report (a result the driver holds is its own)."""
    _threads(os.environ.get("OMP_NUM_THREADS"))
    node = {NODE_KEY: ray.get_runtime_context().get_node_id()}
    if config.get(DRIVER_TRIAL_KEY) and context.results_on_driver:
        tune.report(node)  # the driver evaluated it: raymlx.head_start.DriverTrials fills the result in
        return
    tune.report({**attempt(context, config["model"], config["params"]), **node})
