"""A run's head start: the folds, their features, each model's search and its first trials, on the driver while Ray starts.

Ray's local runtime takes seconds to start on a small machine, and Tune's first trial workers seconds more
to import what a trial needs. The driver has the data and scikit-learn in hand by then, so it evaluates each
model's first configuration itself until the runtime is up. Each is a real trial: the search is told its
result, and Tune's next trial is given its configuration and reports that result instead of fitting it
again, so it gets the same MLflow child run (started and ended when the driver evaluated it, tagged
``raymlx.evaluated_on=driver``), the same leaderboard entry and the same count as any other trial.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable

import pandas as pd

from raymlx.defaults import prepare
from raymlx.errors import RaymlxError
from raymlx.folds import Fold, make_folds
from raymlx.metrics import Metric, get_metric
from raymlx.pipeline import build_pipeline, fold_features
from raymlx.search import ModelSearcher, model_searcher
from raymlx.spec import Spec
from raymlx.spec_io import LoadedSpec
from raymlx.trainable import ModelPlan, TrialContext, attempt

__all__ = ["HeadStart", "head_start", "compute_fold_features", "PipelineFailed", "phase"]

logger = logging.getLogger(__name__)


class PipelineFailed(RaymlxError):
    """A pipeline step raised while computing a fold's features."""


@dataclass(frozen=True)
class HeadStart:
    """What the driver prepared before tuning: the spec with its automatic baseline, the folds and their
    features, the metric, each model's search (multiplexed in ``searcher``) and the trials' context, with
    the results of the trials it evaluated itself."""

    loaded: LoadedSpec
    folds: list[Fold]
    baseline: str | None
    features: dict[str | None, list]
    metric: Metric
    budgets: dict[str, int]
    searcher: ModelSearcher
    context: TrialContext


@contextmanager
def phase(name: str):
    """Log how long a phase of the experiment took (shown with --verbose)."""
    started = time.perf_counter()
    yield
    logger.info("%s: %.2f s", name, time.perf_counter() - started)


def compute_fold_features(spec: Spec, frame: pd.DataFrame, folds: list[Fold], *,
                          base_dir: str) -> dict[str | None, list]:
    """Each pipeline's features on each fold, computed once for every trial of every model that uses it."""
    result = {}
    for name in dict.fromkeys(m.pipeline for m in spec.models.values()):
        pipeline = build_pipeline(name, spec.pipelines, base_dir=base_dir)
        try:
            result[name] = [fold_features(frame, f, pipeline, target=spec.data.target,
                                          forecasting=spec.task == "forecasting",
                                          future_columns=spec.data.future_columns) for f in folds]
        except Exception as exc:
            raise PipelineFailed(f"pipeline '{name}' failed: {type(exc).__name__}: {exc}") from exc
    return result


def head_start(loaded: LoadedSpec, frame: pd.DataFrame, *, ray_is_up: Callable[[], bool] | None) -> HeadStart:
    """Compute the folds and features, make each model's search, and evaluate first trials until Ray is up.

    Args:
        loaded: The validated spec.
        frame: The data set, as :func:`raymlx.checks.validate` returned it.
        ray_is_up: Whether the local runtime has started (asked before each first trial: at most one per
            model); ``None`` evaluates none (a cluster, or a resumed session, which continues Tune's own trials).
            Nor are any evaluated here when a model asks for a GPU or ``runtime.trials_on_driver`` is false.

    Raises:
        PipelineFailed: A pipeline step raised.
    """
    metric = get_metric(loaded.spec.metric_spec.name, loaded.spec.metric_spec.mode, base_dir=loaded.base_dir)
    with phase("fold features"):
        folds = make_folds(frame, loaded.spec)
        loaded, baseline = prepare(loaded, folds)
        features = compute_fold_features(loaded.spec, frame, folds, base_dir=loaded.base_dir)
    spec = loaded.spec
    searches = {name: model_searcher(m.search, metric=metric.name, mode=metric.mode) for name, m in spec.models.items()}
    searcher = ModelSearcher(searches, metric=metric.name, mode=metric.mode)
    plans = {name: ModelPlan(m.model, m.pipeline, dict(m.params), m.max_failures) for name, m in spec.models.items()}
    context = TrialContext(plans, features, spec.metric_spec.name, metric.mode, loaded.base_dir)
    if ray_is_up is not None and spec.runtime.trials_on_driver and not any(m.resources.gpu for m in spec.models.values()):
        with phase("trials on the driver"):
            results = _first_trials(searcher, context, ray_is_up, limit=len(spec.models))
        context = dataclasses.replace(context, driver_results=results)
    return HeadStart(loaded, folds, baseline, features, metric, {n: b for n, (_, b) in searches.items()}, searcher,
                     context)


def _first_trials(searcher: ModelSearcher, context: TrialContext, ray_is_up: Callable[[], bool], *,
                  limit: int) -> dict[int, dict[str, Any]]:
    """Evaluate the configurations the search hands out, while Ray is not up, ``limit`` at most."""
    results: dict[int, dict[str, Any]] = {}
    while len(results) < limit and not ray_is_up():
        index = len(results)
        trial_id = f"driver_{index}"
        config = searcher.suggest_new(trial_id)
        if not isinstance(config, dict):
            break  # every budget is spent, or the searches wait for results
        started = time.time()
        result = attempt(context, config["model"], config["params"])
        ended = time.time()
        searcher.evaluated(trial_id, config, result, seconds=ended - started,
                           marker={"index": index, "started_ms": int(started * 1000), "ended_ms": int(ended * 1000)})
        results[index] = result
    if results:
        logger.info("%d trials evaluated on the driver while Ray started", len(results))
    return results
