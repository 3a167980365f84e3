"""Running an experiment: features once per fold, every model's search concurrently on Ray, then the champion.

Orchestration only: the MLflow session lives in :mod:`raymlx.tracking`, trial runs in
:mod:`raymlx.trial_runs`, the leaderboard in :mod:`raymlx.select`, the champion's refit
and registration in :mod:`raymlx.champion`.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import ray
from ray import tune
from ray.tune.logger import JsonLoggerCallback

from raymlx.champion import register_champion, user_code_paths
from raymlx.defaults import prepare
from raymlx.errors import RaymlxError
from raymlx.folds import Fold, make_folds
from raymlx.metrics import Metric, get_metric
from raymlx.pipeline import build_pipeline, fold_features
from raymlx.progress import ModelProgress, ProgressCallback
from raymlx.runtime import BackgroundRuntime, trial_actor_env
from raymlx.search import ModelSearcher, model_searcher
from raymlx.select import LeaderboardRow, beats_baseline, build_leaderboard, champion_row
from raymlx.spec import Spec
from raymlx.spec_io import LoadedSpec
from raymlx.tracking import Session, log_leaderboard, open_session, resolve_tracking_uri
from raymlx.trainable import ModelPlan, TrialContext, run_trial
from raymlx.trial_runs import TrialRunCallback

__all__ = ["ExperimentResult", "run_experiment", "compute_fold_features", "PipelineFailed", "TrackingFailed",
           "user_code_paths"]

logger = logging.getLogger(__name__)


class PipelineFailed(RaymlxError):
    """A pipeline step raised while computing a fold's features."""


class TrackingFailed(RaymlxError):
    """The tracking store refused trial runs: the leaderboard would not match what MLflow holds."""


@dataclass(frozen=True)
class ExperimentResult:
    """What ``raymlx tune`` produced: the leaderboard, the champion (``None`` when every trial failed), and where
    MLflow holds it all.

    ``baseline`` names the automatic baseline's row (``None`` when the spec turns it off);
    ``beats_baseline`` is ``False`` when no model scored better than it.
    """

    leaderboard: list[LeaderboardRow]
    champion: str | None
    champion_uri: str | None
    champion_version: str | None
    session_run_id: str
    tracking_uri: str
    experiment_id: str
    promoted: bool = False  # whether the new version took the `champion` alias (else it is the `challenger`)
    promotion: str | None = None  # why, with both scores
    baseline: str | None = None  # the baseline's row on the leaderboard
    beats_baseline: bool | None = None  # whether some model beat it (None without a scored baseline)


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


def _trainable(context: TrialContext, spec: Spec):
    resources = {name: m.resources for name, m in spec.models.items()}

    def per_trial(config: dict[str, Any]) -> tune.PlacementGroupFactory:
        r = resources[config["model"]]
        return tune.PlacementGroupFactory([{"CPU": r.cpu, "GPU": r.gpu}])

    return tune.with_resources(tune.with_parameters(run_trial, context=context), resources=per_trial)


def run_experiment(loaded: LoadedSpec, frame: pd.DataFrame, *, address: str | None = None,
                   runtime: BackgroundRuntime | None = None, on_progress=None,
                   verbose: bool = False, force_promote: bool = False) -> ExperimentResult:
    """Tune every model, log everything to MLflow, register the champion.

    Args:
        loaded: The validated spec.
        frame: The data set, as :func:`raymlx.checks.validate` returned it.
        address: Ray cluster to join, overriding ``runtime.address``.
        runtime: Ray, already starting (the command line starts it before checking the spec); shut
            down here once tuning ends. Default: started here.
        on_progress: Called with each model's :class:`ModelProgress` whenever a trial starts or ends.
        verbose: Show Ray's worker output.
        force_promote: Give the new winner the ``champion`` alias even if it does not beat the current one.
    """
    base_dir = loaded.base_dir
    runtime = runtime or BackgroundRuntime(loaded.spec.runtime, address=address, base_dir=base_dir, verbose=verbose)
    try:
        metric = get_metric(loaded.spec.metric_spec.name, loaded.spec.metric_spec.mode, base_dir=base_dir)
        with _phase("fold features"):
            folds = make_folds(frame, loaded.spec)
            loaded, baseline = prepare(loaded, folds)
            spec = loaded.spec
            features = compute_fold_features(spec, frame, folds, base_dir=base_dir)
        progress, session = _tune_while_opening(loaded, frame, folds, features, metric, runtime, on_progress)
        try:
            board = build_leaderboard(progress.results, models=list(spec.models), metric=metric.name, mode=metric.mode,
                                      wall_times={n: p.wall_time_s for n, p in progress.models.items()},
                                      errors={n: p.last_error for n, p in progress.models.items()}, baseline=baseline)
            with ThreadPoolExecutor(1) as pool:  # Ray's shutdown (about a second) overlaps the champion's refit
                finishing = pool.submit(_finish, loaded, frame, folds, board, session, metric, force_promote)
                runtime.shutdown()
                result = finishing.result()
        except BaseException:
            session.end(status="FAILED")
            raise
    finally:
        runtime.shutdown()
    session.end(status="FINISHED")
    return result


def _tune_while_opening(loaded: LoadedSpec, frame: pd.DataFrame, folds: list[Fold], features, metric,
                        runtime: BackgroundRuntime, on_progress) -> tuple[_TuneOutcome, Session]:
    """Tune while the session's MLflow runs open (loading MLflow's store takes about 2 s on one core,
    as long as Tune takes to start the first trials); trial runs are written once those exist."""
    with ThreadPoolExecutor(1, thread_name_prefix="raymlx-session") as pool:
        opening = pool.submit(open_session, loaded, frame, folds)
        try:
            with _phase("waiting for Ray"):
                started_ray = runtime.wait()
            with _phase("tuning"), trial_actor_env(inherited=started_ray):
                progress = _tune(loaded.spec, features, metric, loaded.base_dir, opening, on_progress)
        except BaseException:
            failed = opening.exception()
            if failed is not None:
                raise failed from None  # the store failed: say that, not how Tune stopped
            opening.result().end(status="FAILED")
            raise
        return progress, opening.result()


def _finish(loaded: LoadedSpec, frame: pd.DataFrame, folds: list[Fold], board: list[LeaderboardRow],
            session: Session, metric: Metric, force_promote: bool) -> ExperimentResult:
    """Log the leaderboard and register the winner through the promotion gate: everything after tuning that needs
    no Ray."""
    log_leaderboard(session, board, metric.name)
    baseline = next((r.model for r in board if r.baseline), None)
    best = champion_row(board, baseline_may_win=loaded.spec.baseline_spec.may_win)
    if best is None:  # every trial failed
        return ExperimentResult(board, None, None, None, session.session_id, session.tracking_uri,
                                session.experiment_id, baseline=baseline, beats_baseline=beats_baseline(board))
    with _phase("champion refit and registration"):
        champion = register_champion(loaded, frame, best, metric=metric, folds=folds,
                                     tracking_uri=session.tracking_uri, run_id=session.session_id,
                                     experiment_id=session.experiment_id, force_promote=force_promote)
    return ExperimentResult(board, champion.model, champion.uri, champion.version, session.session_id,
                            session.tracking_uri, session.experiment_id, champion.decision.promote,
                            champion.decision.reason, baseline, beats_baseline(board))


@contextmanager
def _phase(name: str):
    """Log how long a phase of the experiment took (shown with --verbose)."""
    started = time.perf_counter()
    yield
    logger.info("%s: %.2f s", name, time.perf_counter() - started)


@dataclass
class _TuneOutcome:
    results: Any
    models: dict[str, ModelProgress]


def _concurrency(spec: Spec) -> int:
    """Trials at once: as many as the cluster's CPUs hold, unless the spec caps it.

    Tune lets a custom searcher keep only one trial pending unless told the
    concurrency, which would run the trials one by one.
    """
    if spec.runtime.max_concurrent_trials:
        return spec.runtime.max_concurrent_trials
    smallest = min(m.resources.cpu for m in spec.models.values())
    return max(1, int(ray.cluster_resources().get("CPU", 1) // smallest))


def _tune(spec, features, metric, base_dir, runs: Future, on_progress) -> _TuneOutcome:
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # progress is ours to show; Tune's reporter stays quiet
    # MLflow is the record: of Tune's per-trial files keep only result.json (its results read it back);
    # the CSV and TensorBoard writers cost time on every trial.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")  # a failed trial reports no score
    searches = {name: model_searcher(m.search, metric=metric.name, mode=metric.mode) for name, m in spec.models.items()}
    searcher = ModelSearcher(searches, metric=metric.name, mode=metric.mode)
    plans = {name: ModelPlan(m.model, m.pipeline, dict(m.params), m.max_failures) for name, m in spec.models.items()}
    context = TrialContext(plans, features, spec.metric_spec.name, metric.mode, base_dir)
    progress = ProgressCallback({n: b for n, (_, b) in searches.items()}, metric=metric.name, mode=metric.mode,
                                on_update=on_progress)
    mlflow_callback = TrialRunCallback(runs=runs, tracking_uri=resolve_tracking_uri(spec.tracking.uri, base_dir),
                                       experiment_name=spec.experiment_name)
    storage = spec.runtime.storage_path or str(Path(base_dir, ".raymlx", "ray_results").resolve())
    tuner = tune.Tuner(
        _trainable(context, spec),
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=searcher.total_trials, reuse_actors=True,
                                    max_concurrent_trials=_concurrency(spec)),
        run_config=tune.RunConfig(name=spec.name, storage_path=storage, verbose=0,
                                  callbacks=[mlflow_callback, progress, JsonLoggerCallback()],
                                  failure_config=tune.FailureConfig(max_failures=0)),
    )
    try:
        results = tuner.fit()
    finally:
        failed_writes = mlflow_callback.close()
    if failed_writes:
        raise TrackingFailed(f"{len(failed_writes)} MLflow writes of trial runs failed; the first: "
                             f"{type(failed_writes[0]).__name__}: {failed_writes[0]}")
    return _TuneOutcome(results, progress.models)
