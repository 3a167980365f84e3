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
from raymlx.champion import FittedPredictor, user_code_paths
from raymlx.champion.register import ChampionRegistration, refit
from raymlx.errors import RaymlxError
from raymlx.features import PipelineFailed, compute_fold_features, share_features
from raymlx.folds import Fold
from raymlx.head_start import HeadStart, head_start, phase
from raymlx.kept_predictions import KeepBestPredictions, ResultJsonLogger
from raymlx.metrics import Metric
from raymlx.model_end import ModelEndCallback, ModelEnded
from raymlx.progress import ModelProgress, ProgressCallback
from raymlx.runtime import BackgroundRuntime, trial_actor_env
from raymlx.search import model_searcher
from raymlx.select import LeaderboardRow, beats_baseline, build_leaderboard, champion_row
from raymlx.spec import Spec
from raymlx.spec_io import LoadedSpec
from raymlx.recovery import Resumable, close_orphans, find_resumable, reopen
from raymlx.tracking import Session, ensure_experiment, log_leaderboard, open_session, resolve_tracking_uri
from raymlx.trainable import TrialContext, run_trial
from raymlx.trial_runs import TrialRunCallback

__all__ = ["ExperimentResult", "run_experiment", "compute_fold_features", "share_features", "PipelineFailed",
           "TrackingFailed", "ExperimentInterrupted", "planned_trials", "user_code_paths"]

logger = logging.getLogger(__name__)


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
                   on_model_end: Callable[[ModelEnded], Any] | None = None,
                   head: HeadStart | None = None) -> ExperimentResult:
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
        head: The folds, features, searches and first trials :func:`raymlx.head_start.head_start` prepared
            while Ray started (the command line does, before importing MLflow). Default: prepared here.

    Raises:
        ExperimentInterrupted: On Ctrl-C; every run of the session is closed as KILLED.
    """
    spec, base_dir = loaded.spec, loaded.base_dir
    runtime = runtime or BackgroundRuntime(spec.runtime, address=address, base_dir=base_dir, verbose=verbose)
    state = _Progress(planned_trials(spec), on_model_end=on_model_end)
    try:
        start = _starting_point(loaded, resume)
        head = head or head_start(loaded, frame, trials_on_driver=runtime.local and not start.earlier,
                                 ray_ready=runtime.ready)
        loaded, folds, metric, spec = head.loaded, head.folds, head.metric, head.loaded.spec
        state.total = planned_trials(spec)  # the baseline's trials included
        progress = _tune_while_opening(loaded, frame, head, runtime, on_progress, start, state)
        session = state.session
        assert session is not None  # opened, or the tuning raised
        board = build_leaderboard(progress.results, models=list(spec.models), metric=metric.name, mode=metric.mode,
                                  wall_times={n: p.wall_time_s for n, p in progress.models.items()},
                                  errors={n: p.last_error for n, p in progress.models.items()},
                                  baseline=head.baseline)
        result = _end(loaded, frame, folds, board, session, metric, runtime, force_promote)
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
        if head is not None:
            head.driver.stop()  # no more trials on the driver once tuning ended, however it ended
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


def _tune_while_opening(loaded: LoadedSpec, frame: pd.DataFrame, head: HeadStart, runtime: BackgroundRuntime,
                        on_progress, start: _Start, state: _Progress) -> _TuneOutcome:
    """Tune while the session's MLflow runs open (loading MLflow's store takes about 2 s on one core,
    as long as Tune takes to start the first trials); trial runs are written once those exist."""
    with ThreadPoolExecutor(1, thread_name_prefix="raymlx-session") as pool:
        opening = pool.submit(_open, loaded, frame, head.folds, start)
        try:
            with phase("waiting for Ray"):
                started_ray = runtime.wait()
            with phase("sharing features"):
                share_features(head.features)
            checkpoint()  # a Ctrl-C dropped while Ray started stops here, before any trial
            with phase("tuning"), trial_actor_env(inherited=started_ray):
                progress = _tune(loaded.spec, head, opening, on_progress, start, state)
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


def _end(loaded: LoadedSpec, frame: pd.DataFrame, folds: list[Fold], board: list[LeaderboardRow], session: Session,
         metric: Metric, runtime: BackgroundRuntime, force_promote: bool) -> ExperimentResult:
    """Everything after tuning: Ray's shutdown (0.3 to 1 s, mostly waiting) while a thread rescores the current
    champion, refits the winner and logs its model, and another writes the leaderboard (waiting on the disk:
    about 0.5 s of sqlite commits after the shutdown); then the registry and the alias."""
    best = champion_row(board, baseline_may_win=loaded.spec.baseline_spec.may_win)
    with ThreadPoolExecutor(2, thread_name_prefix="raymlx-end") as pool:
        board_logged = pool.submit(log_leaderboard, session, board, metric.name)
        registration = None if best is None else ChampionRegistration(
            pool, loaded, frame, best, metric=metric, folds=folds, tracking_uri=session.tracking_uri,
            run_id=session.session_id, experiment_id=session.experiment_id, timed=phase,
            fitted=lambda: _refit(loaded, frame, best))
        try:
            with phase("Ray shutdown"):
                runtime.shutdown()
            board_logged.result()
            with phase("champion registration"):
                champion = registration.result(force_promote=force_promote) if registration else None
        except BaseException:  # Ctrl-C: the pool waits for its thread, which stops after its current step
            if registration is not None:
                registration.cancel()
            raise
    baseline = next((r.model for r in board if r.baseline), None)
    if champion is None:  # every trial failed
        return ExperimentResult(board, None, None, None, session.session_id, session.tracking_uri,
                                session.experiment_id, baseline=baseline, beats_baseline=beats_baseline(board))
    return ExperimentResult(board, champion.model, champion.uri, champion.version, session.session_id,
                            session.tracking_uri, session.experiment_id, champion.decision.promote,
                            champion.decision.reason, baseline, beats_baseline(board))


def _refit(loaded: LoadedSpec, frame: pd.DataFrame, best: LeaderboardRow) -> FittedPredictor:
    with phase("champion refit"):
        return refit(loaded, frame, best)


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


def _tune(spec: Spec, head: HeadStart, runs: Future, on_progress, start: _Start, state: _Progress) -> _TuneOutcome:
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # progress is ours to show; Tune's reporter stays quiet
    # MLflow is the record: of Tune's per-trial files keep only result.json (its results read it back);
    # the CSV and TensorBoard writers cost time on every trial.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")  # a failed trial reports no score
    metric, searcher, context, budgets = head.metric, head.searcher, head.context, head.budgets
    progress = ProgressCallback(budgets, metric=metric.name, mode=metric.mode, on_update=on_progress,
                                retries={n: p.max_failures for n, p in context.models.items()})
    state.models = progress.models
    mlflow_callback = TrialRunCallback(runs=runs, tracking_uri=resolve_tracking_uri(spec.tracking.uri,
                                                                                    context.base_dir),
                                       experiment_name=spec.experiment_name, resume=start.earlier is not None)
    storage, _, name = start.tune_path.rpartition("/")
    try:
        with _interruption() as interrupted, _compat.keep_starting_actors():
            # The driver's results go in first; Tune restores saved callback states by position: progress stays third.
            callbacks = [head.driver, KeepBestPredictions(metric=metric.name, mode=metric.mode), progress,
                         mlflow_callback, ResultJsonLogger()]
            if state.on_model_end is not None and not start.restore:  # restored trials end in no callback
                callbacks.append(ModelEndCallback(budgets, hook=state.on_model_end,
                                                  flushed=mlflow_callback.flushed, runs=runs, spec=spec,
                                                  features=head.features, metric=metric.name, mode=metric.mode))
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
