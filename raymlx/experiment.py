"""Running an experiment: features once per fold, every model's search concurrently on Ray, then the champion.

Orchestration only: the MLflow session lives in :mod:`raymlx.tracking`, trial runs in
:mod:`raymlx.trial_runs`, the leaderboard in :mod:`raymlx.select`, the champion's refit
and registration in :mod:`raymlx.champion`.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import ray
from mlflow.tracking import MlflowClient
from ray import tune
from ray.air.constants import TRAINING_ITERATION

from raymlx import _compat
from raymlx._interrupts import checkpoint
from raymlx.champion import FittedPredictor, register_champion, user_code_paths
from raymlx.champion.register import refit
from raymlx.defaults import prepare
from raymlx.errors import RaymlxError
from raymlx.folds import Fold, make_folds
from raymlx.kept_predictions import KeepBestPredictions, ResultJsonLogger
from raymlx.metrics import Metric, get_metric
from raymlx.model_end import ModelEndCallback, ModelEnded
from raymlx.pipeline import build_pipeline, fold_features
from raymlx.progress import ModelProgress, ProgressCallback
from raymlx.runtime import BackgroundRuntime, trial_actor_env
from raymlx.search import ModelSearcher, model_searcher
from raymlx.select import LeaderboardRow, beats_baseline, build_leaderboard, champion_row
from raymlx.spec import Spec
from raymlx.spec_io import LoadedSpec
from raymlx.recovery import Resumable, close_orphans, find_resumable, reopen
from raymlx.tracking import Session, ensure_experiment, log_leaderboard, open_session, resolve_tracking_uri
from raymlx.trainable import ModelPlan, TrialContext, run_trial
from raymlx.trial_runs import TrialRunCallback

__all__ = ["ExperimentResult", "run_experiment", "compute_fold_features", "share_features", "PipelineFailed",
           "TrackingFailed", "ExperimentInterrupted", "planned_trials", "user_code_paths"]

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


def share_features(features: dict[str | None, list]) -> None:
    """Move each fold's features into Ray's object store, in place: every trial reads them there
    without a copy, and the driver keeps none of its own."""
    for folds in features.values():
        for i, fold in enumerate(folds):
            if not isinstance(fold, ray.ObjectRef):
                folds[i] = ray.put(fold)


def _trainable(context: TrialContext, spec: Spec):
    resources = {name: m.resources for name, m in spec.models.items()}

    def per_trial(config: dict[str, Any]) -> tune.PlacementGroupFactory:
        r = resources[config["model"]]
        return tune.PlacementGroupFactory([{"CPU": r.cpu, "GPU": r.gpu}])

    return tune.with_resources(tune.with_parameters(run_trial, context=context), resources=per_trial)


class ExperimentInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) stopped the experiment: its runs are closed as KILLED, nothing is registered,
    and ``raymlx tune --resume`` continues it.

    Attributes:
        done: Trials that ran to the end (scored or failed), earlier sessions' included when resumed.
        total: Trials the spec asks for.
        session_run_id: The session's MLflow run, when it was opened.
    """

    def __init__(self, done: int, total: int, session_run_id: str | None) -> None:
        super().__init__(f"interrupted after {done} of {total} trials")
        self.done, self.total, self.session_run_id = done, total, session_run_id


def planned_trials(spec: Spec) -> int:
    """How many trials the spec asks for (a grid runs each of its points once at most)."""
    return sum(model_searcher(m.search, metric="score", mode="max")[1] for m in spec.models.values())


@dataclass
class _Progress:
    """What an interruption reports: the session once opened, trials done so far."""

    total: int
    session: Session | None = None
    models: dict[str, ModelProgress] = field(default_factory=dict)  # kept by Tune's callback as trials end
    on_model_end: Callable[[ModelEnded], Any] | None = None

    @property
    def done(self) -> int:
        return sum(p.done for p in self.models.values())


def run_experiment(loaded: LoadedSpec, frame: pd.DataFrame, *, address: str | None = None,
                   runtime: BackgroundRuntime | None = None, on_progress=None,
                   verbose: bool = False, force_promote: bool = False, resume: bool = False,
                   on_model_end: Callable[[ModelEnded], Any] | None = None) -> ExperimentResult:
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
        resume: Continue the spec's last unfinished session (its MLflow runs and Tune's saved state);
            without one, start a new session.
        on_model_end: Called as soon as a model's trials have all ended, while other models may still tune
            (not for a resumed session's models); it should hand its work elsewhere and return.

    Raises:
        ExperimentInterrupted: On Ctrl-C; every run of the session is closed as KILLED.
    """
    spec, base_dir = loaded.spec, loaded.base_dir
    runtime = runtime or BackgroundRuntime(spec.runtime, address=address, base_dir=base_dir, verbose=verbose)
    state = _Progress(planned_trials(spec), on_model_end=on_model_end)
    try:
        metric = get_metric(spec.metric_spec.name, spec.metric_spec.mode, base_dir=base_dir)
        start = _starting_point(loaded, resume)
        with _phase("fold features"):
            folds = make_folds(frame, loaded.spec)
            loaded, baseline = prepare(loaded, folds)
            spec = loaded.spec
            features = compute_fold_features(spec, frame, folds, base_dir=base_dir)
        state.total = planned_trials(spec)  # the baseline's trials included
        progress = _tune_while_opening(loaded, frame, folds, features, metric, runtime, on_progress, start, state)
        session = state.session
        assert session is not None  # opened, or the tuning raised
        board = build_leaderboard(progress.results, models=list(spec.models), metric=metric.name, mode=metric.mode,
                                  wall_times={n: p.wall_time_s for n, p in progress.models.items()},
                                  errors={n: p.last_error for n, p in progress.models.items()}, baseline=baseline)
        with ThreadPoolExecutor(1) as pool:  # Ray's shutdown (about a second) overlaps the champion's refit
            refitting = pool.submit(_refit, loaded, frame, board)
            runtime.shutdown()
            result = _register(loaded, frame, folds, board, session, metric, refitting.result(), force_promote)
    except KeyboardInterrupt:
        if state.session is not None:
            state.session.end(status="KILLED")
        raise ExperimentInterrupted(state.done, state.total,
                                    state.session.session_id if state.session else None) from None
    except BaseException:
        if state.session is not None:
            state.session.end(status="FAILED")
        raise
    finally:
        runtime.shutdown()
    session.end(status="FINISHED")
    return result


@dataclass(frozen=True)
class _Start:
    """Where a session starts: Tune's experiment directory, and the earlier session it continues."""

    tune_path: str
    earlier: Resumable | None = None
    restore: bool = False  # Tune saved state there


def _starting_point(loaded: LoadedSpec, resume: bool) -> _Start:
    spec, base_dir = loaded.spec, loaded.base_dir
    storage = spec.runtime.storage_path or str(Path(base_dir, ".raymlx", "ray_results").resolve())
    fresh = _Start(f"{storage.rstrip('/')}/{spec.name}_{time.strftime('%Y%m%d-%H%M%S')}_{os.getpid()}")
    if not resume:
        return fresh
    client = MlflowClient(resolve_tracking_uri(spec.tracking.uri, base_dir))
    experiment = client.get_experiment_by_name(spec.experiment_name)
    earlier = None
    if experiment is not None:
        close_orphans(client, experiment.experiment_id, spec.name)
        earlier = find_resumable(client, experiment.experiment_id, spec.name)
    if earlier is None:
        logger.warning("nothing to resume: the last session of '%s' completed (or none started); starting a new one",
                       spec.name)
        return fresh
    return _Start(earlier.tune_path, earlier, restore=_has_tune_state(earlier.tune_path))


def _has_tune_state(path: str) -> bool:
    """Whether Tune saved its experiment state there (not when stopped before its first save); a remote
    path is assumed to hold it (Tune starts afresh where it finds none)."""
    return "://" in path or any(Path(path).glob("experiment_state-*.json"))


def _open(loaded: LoadedSpec, frame: pd.DataFrame, folds: list[Fold], start: _Start) -> Session:
    """The session's MLflow runs: the earlier session's, RUNNING again, or new ones after closing orphans."""
    spec = loaded.spec
    tracking_uri = resolve_tracking_uri(spec.tracking.uri, loaded.base_dir)
    _compat.empty_sqlite_store(tracking_uri)  # a new sqlite store without MLflow's migrations
    client = MlflowClient(tracking_uri)
    if start.earlier is not None:
        return reopen(client, start.earlier.session, tracking_uri=tracking_uri)
    experiment_id = ensure_experiment(spec.experiment_name, tracking_uri=tracking_uri, base_dir=loaded.base_dir)
    close_orphans(client, experiment_id, spec.name)
    return open_session(loaded, frame, folds, tune_path=start.tune_path)


def _tune_while_opening(loaded: LoadedSpec, frame: pd.DataFrame, folds: list[Fold], features, metric,
                        runtime: BackgroundRuntime, on_progress, start: _Start, state: _Progress) -> _TuneOutcome:
    """Tune while the session's MLflow runs open (loading MLflow's store takes about 2 s on one core,
    as long as Tune takes to start the first trials); trial runs are written once those exist."""
    with ThreadPoolExecutor(1, thread_name_prefix="raymlx-session") as pool:
        opening = pool.submit(_open, loaded, frame, folds, start)
        try:
            with _phase("waiting for Ray"):
                started_ray = runtime.wait()
            with _phase("sharing features"):
                share_features(features)
            checkpoint()  # a Ctrl-C dropped while Ray started stops here, before any trial
            with _phase("tuning"), trial_actor_env(inherited=started_ray):
                progress = _tune(loaded.spec, features, metric, loaded.base_dir, opening, on_progress, start, state)
        except BaseException:
            failed = opening.exception()
            if failed is not None:
                raise failed from None  # the store failed: say that, not how Tune stopped
            state.session = opening.result()
            raise
        state.session = opening.result()
        if progress.interrupted:
            raise KeyboardInterrupt
        return progress


def _refit(loaded: LoadedSpec, frame: pd.DataFrame, board: list[LeaderboardRow]) -> FittedPredictor | None:
    """The champion's configuration fitted on every row; ``None`` when no row may be the champion."""
    best = champion_row(board, baseline_may_win=loaded.spec.baseline_spec.may_win)
    if best is None:
        return None
    with _phase("champion refit"):
        return refit(loaded, frame, best)


def _register(loaded: LoadedSpec, frame: pd.DataFrame, folds: list[Fold], board: list[LeaderboardRow],
              session: Session, metric: Metric, predictor: FittedPredictor | None,
              force_promote: bool) -> ExperimentResult:
    """Log the leaderboard and register the refit winner through the promotion gate: everything after tuning
    that needs no Ray."""
    log_leaderboard(session, board, metric.name)
    baseline = next((r.model for r in board if r.baseline), None)
    best = champion_row(board, baseline_may_win=loaded.spec.baseline_spec.may_win)
    if best is None or predictor is None:  # every trial failed
        return ExperimentResult(board, None, None, None, session.session_id, session.tracking_uri,
                                session.experiment_id, baseline=baseline, beats_baseline=beats_baseline(board))
    with _phase("champion registration"):
        champion = register_champion(loaded, frame, best, metric=metric, folds=folds,
                                     tracking_uri=session.tracking_uri, run_id=session.session_id,
                                     experiment_id=session.experiment_id, force_promote=force_promote,
                                     predictor=predictor)
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
    interrupted: bool = False


def _concurrency(spec: Spec) -> int:
    """Trials at once: as many as the cluster's CPUs hold, unless the spec caps it.

    Tune lets a custom searcher keep only one trial pending unless told the
    concurrency, which would run the trials one by one.
    """
    if spec.runtime.max_concurrent_trials:
        return spec.runtime.max_concurrent_trials
    smallest = min(m.resources.cpu for m in spec.models.values())
    return max(1, int(ray.cluster_resources().get("CPU", 1) // smallest))


# A trial reports once: stopping it on that result spares the call that would only hear its function return.
_ONE_RESULT = {TRAINING_ITERATION: 1}


def _tune(spec, features, metric, base_dir, runs: Future, on_progress, start: _Start,
          state: _Progress) -> _TuneOutcome:
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # progress is ours to show; Tune's reporter stays quiet
    # MLflow is the record: of Tune's per-trial files keep only result.json (its results read it back);
    # the CSV and TensorBoard writers cost time on every trial.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")  # a failed trial reports no score
    searches = {name: model_searcher(m.search, metric=metric.name, mode=metric.mode) for name, m in spec.models.items()}
    searcher = ModelSearcher(searches, metric=metric.name, mode=metric.mode)
    plans = {name: ModelPlan(m.model, m.pipeline, dict(m.params), m.max_failures) for name, m in spec.models.items()}
    context = TrialContext(plans, features, spec.metric_spec.name, metric.mode, base_dir,
                           keep_predictions=spec.report.enabled)  # only the report reads them
    progress = ProgressCallback({n: b for n, (_, b) in searches.items()}, metric=metric.name, mode=metric.mode,
                                on_update=on_progress, retries={n: p.max_failures for n, p in plans.items()})
    state.models = progress.models
    mlflow_callback = TrialRunCallback(runs=runs, tracking_uri=resolve_tracking_uri(spec.tracking.uri, base_dir),
                                       experiment_name=spec.experiment_name, resume=start.earlier is not None)
    storage, _, name = start.tune_path.rpartition("/")
    try:
        with _interruption() as interrupted, _compat.keep_starting_actors():
            callbacks = [KeepBestPredictions(metric=metric.name, mode=metric.mode), mlflow_callback, progress,
                         ResultJsonLogger()]
            if state.on_model_end is not None and not start.restore:  # restored trials end in no callback
                callbacks.append(ModelEndCallback({n: b for n, (_, b) in searches.items()}, hook=state.on_model_end,
                                                  flushed=mlflow_callback.flushed, runs=runs, spec=spec,
                                                  features=features, metric=metric.name, mode=metric.mode))
            if start.restore:  # Tuner.restore would bring back the callbacks pickled with the run, not these
                analysis = tune.run(
                    _trainable(context, spec), name=name, storage_path=storage, search_alg=searcher,
                    num_samples=searcher.total_trials, reuse_actors=True, max_concurrent_trials=_concurrency(spec),
                    callbacks=callbacks, verbose=0, raise_on_failed_trial=False, resume_config=tune.ResumeConfig(),
                    stop=_ONE_RESULT)
                results = tune.ResultGrid(analysis)
            else:
                results = tune.Tuner(
                    _trainable(context, spec),
                    tune_config=tune.TuneConfig(search_alg=searcher, num_samples=searcher.total_trials,
                                                reuse_actors=True, max_concurrent_trials=_concurrency(spec)),
                    run_config=tune.RunConfig(name=name, storage_path=storage, verbose=0, callbacks=callbacks,
                                              stop=_ONE_RESULT),
                ).fit()
    finally:
        failed_writes = mlflow_callback.close()
    if failed_writes:
        raise TrackingFailed(f"{len(failed_writes)} MLflow writes of trial runs failed; the first: "
                             f"{type(failed_writes[0]).__name__}: {failed_writes[0]}")
    completed = sum(int(results[i].error is not None or bool((results[i].metrics or {}).get(TRAINING_ITERATION)))
                    for i in range(len(results)))
    return _TuneOutcome(results, progress.models, interrupted=interrupted() or completed < searcher.total_trials)


@contextmanager
def _interruption():
    """Whether Tune stopped on Ctrl-C: ``tune.run`` catches SIGINT itself, stops its trials, saves its
    state and returns as if done. Its handler puts back the one it found when it fires; when it did
    not fire, it stays, and is replaced here so that Ctrl-C interrupts what follows."""
    before = signal.getsignal(signal.SIGINT)
    watched = threading.current_thread() is threading.main_thread() and not int(
        os.environ.get("TUNE_DISABLE_SIGINT_HANDLER", "0"))
    fired = []
    try:
        yield lambda: bool(fired)
    finally:
        if watched:
            if signal.getsignal(signal.SIGINT) is before:
                fired.append(True)
            else:
                signal.signal(signal.SIGINT, before)
