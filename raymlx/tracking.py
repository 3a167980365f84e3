"""MLflow: the experiment, one session run and one parent run per model under it, and what is logged on them.

The child run of each trial is written by :class:`raymlx.trial_runs.TrialRunCallback`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from raymlx._processes import driver_id
from raymlx.errors import redact
from raymlx.store import resolve_tracking_uri
from raymlx.folds import Fold, fold_plan
from raymlx.select import LeaderboardRow, leaderboard_frame
from raymlx.spec_io import LoadedSpec

__all__ = ["resolve_tracking_uri", "ensure_experiment", "start_runs", "SessionRuns", "Session", "open_session",
           "log_spec", "log_leaderboard", "runs_page", "ROLE_TAG", "MODEL_TAG", "SESSION_TAG", "ERROR_TAG",
           "BASELINE_TAG", "EXPERIMENT_KIND_TAG", "STATE_TAG", "NAME_TAG", "DRIVER_TAG", "TUNE_PATH_TAG",
           "TRIAL_ID_TAG"]

ROLE_TAG = "raymlx.role"        # session | model | trial
MODEL_TAG = "raymlx.model"      # the spec's model name
SESSION_TAG = "raymlx.session"  # run id of the session run of one `raymlx tune`
ERROR_TAG = "raymlx.error"      # why a failed trial failed (last line of its traceback)
BASELINE_TAG = "raymlx.baseline"  # "auto" on the parent run of the automatic baseline
# MLflow 3's UI opens an experiment on the view its kind names; runs and their nesting are "Model training".
EXPERIMENT_KIND_TAG = ("mlflow.experimentKind", "custom_model_development")
STATE_TAG = "raymlx.state"      # on session and model runs: partial until every trial ran and the session ended, then complete
NAME_TAG = "raymlx.name"        # the spec's name, on the session run (what --resume looks for)
DRIVER_TAG = "raymlx.driver"    # host:pid:start of the process running the session (a dead one left it orphaned)
TUNE_PATH_TAG = "raymlx.tune_path"  # Tune's experiment directory of the session (what --resume restores)
TRIAL_ID_TAG = "raymlx.trial_id"    # Tune's trial id, on trial runs (a resumed trial writes to its own run again)


def _is_local_store(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:", "/", "postgresql", "mysql", "mssql"))


def ensure_experiment(name: str, *, tracking_uri: str, base_dir: str | Path) -> str:
    """Get or create the experiment; artifacts of a local store go to ``mlartifacts/`` beside the spec.

    The experiment's kind is set to model training (unless it has one), so that ``mlflow ui`` opens on its runs.
    """
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        location = (Path(base_dir) / "mlartifacts").resolve().as_uri() if _is_local_store(tracking_uri) else None
        experiment_id = client.create_experiment(name, artifact_location=location, tags=dict([EXPERIMENT_KIND_TAG]))
    else:
        experiment_id = experiment.experiment_id
        if EXPERIMENT_KIND_TAG[0] not in experiment.tags:
            client.set_experiment_tag(experiment_id, *EXPERIMENT_KIND_TAG)
    return experiment_id


def runs_page(tracking_uri: str, experiment_id: str) -> str:
    """Where MLflow's UI shows the experiment's runs: on the tracking server, or on ``mlflow ui``'s default address.

    MLflow 3's UI opens on its GenAI view unless told otherwise (``workflowType``); its
    runs and their nesting are on the model training view.
    """
    base = tracking_uri.rstrip("/") if tracking_uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"
    return f"{base}/#/experiments/{experiment_id}?workflowType=machine_learning"


@dataclass(frozen=True)
class SessionRuns:
    """What a trial run is written under: the experiment, the session run, each model's parent run."""

    experiment_id: str
    session_id: str
    parents: dict[str, str]


def start_runs(client: MlflowClient, experiment_id: str, *, name: str, models: list[str],
               tags: dict[str, str] | None = None) -> tuple[str, dict[str, str]]:
    """Start the session run (with ``tags``) and one parent run per model under it, all partial until they end.

    Returns:
        The session run id and each model's parent run id.
    """
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    session = client.create_run(experiment_id, run_name=f"{name} {stamp}",
                                tags={**(tags or {}), ROLE_TAG: "session", STATE_TAG: "partial"})
    session_id = session.info.run_id
    parents = {}
    for model in models:
        run = client.create_run(experiment_id, run_name=model, tags={
            ROLE_TAG: "model", MODEL_TAG: model, SESSION_TAG: session_id, "mlflow.parentRunId": session_id,
            STATE_TAG: "partial"})
        parents[model] = run.info.run_id
    return session_id, parents


@dataclass(frozen=True)
class Session(SessionRuns):
    """The MLflow side of one ``raymlx tune``: the session run and each model's parent run."""

    tracking_uri: str

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(self.tracking_uri)

    def end(self, *, status: str) -> None:
        """End the session run and every model's parent run with ``status`` (FINISHED, FAILED, KILLED);
        FINISHED marks them complete, anything else leaves them partial (``raymlx tune --resume`` continues them)."""
        client = self.client
        for run_id in [*self.parents.values(), self.session_id]:
            if status == "FINISHED":
                client.set_tag(run_id, STATE_TAG, "complete")
            client.set_terminated(run_id, status=status)


def open_session(loaded: LoadedSpec, frame: pd.DataFrame, folds: list[Fold], *, tune_path: str) -> Session:
    """Start the session's runs and log the spec and the fold plan on the session run.

    Args:
        loaded: The spec.
        frame: The data set.
        folds: The validation folds.
        tune_path: Tune's experiment directory of this session.
    """
    spec, base_dir = loaded.spec, loaded.base_dir
    tracking_uri = resolve_tracking_uri(spec.tracking.uri, base_dir)
    experiment_id = ensure_experiment(spec.experiment_name, tracking_uri=tracking_uri, base_dir=base_dir)
    client = MlflowClient(tracking_uri)
    tags = {NAME_TAG: spec.name, DRIVER_TAG: driver_id(), TUNE_PATH_TAG: tune_path}
    session_id, parents = start_runs(client, experiment_id, name=spec.name, models=list(spec.models), tags=tags)
    log_spec(client, session_id, loaded)
    client.log_dict(session_id, fold_plan(frame, folds), "folds.json")  # type: ignore[arg-type]  # any JSON
    return Session(experiment_id, session_id, parents, tracking_uri)


def log_spec(client: MlflowClient, run_id: str, loaded: LoadedSpec) -> None:
    """The spec as written and as it ran (``--set`` overrides and defaults applied), credentials redacted."""
    client.log_text(run_id, redact(loaded.path.read_text()), loaded.path.name)
    resolved = yaml.safe_dump(loaded.spec.model_dump(mode="json"), sort_keys=False)
    client.log_text(run_id, redact(resolved), "spec.resolved.yaml")


def log_leaderboard(session: Session, board: list[LeaderboardRow], metric: str) -> None:
    """Each model's best score, parameters and counts on its parent run (one batch each); the table on the
    session run."""
    client, now = session.client, int(time.time() * 1000)
    for row in board:
        metrics = {"trials": row.trials, "trials_failed": row.failed, "wall_time_s": row.wall_time_s}
        if row.score == row.score:
            metrics.update({f"best_{metric}": row.score, f"best_{metric}_std": row.score_std})
        if row.skill == row.skill:
            metrics["skill_vs_baseline"] = row.skill
        client.log_batch(session.parents[row.model],  # the client splits what exceeds one request
                         metrics=[Metric(key, float(value), now, 0) for key, value in metrics.items()],
                         params=[Param(f"best.{key}", str(value)) for key, value in row.params.items()],
                         tags=[RunTag(BASELINE_TAG, "auto")] if row.baseline else [])
    table = leaderboard_frame(board)
    client.log_text(session.session_id, table.to_csv(index=False), "leaderboard.csv")
