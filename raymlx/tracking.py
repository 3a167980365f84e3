"""MLflow: the experiment, one session run, one parent run per model, one child run per trial."""

from __future__ import annotations

import time
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient
from ray.air.integrations.mlflow import MLflowLoggerCallback

from raymlx._result import failure_of
from raymlx.progress import error_summary

__all__ = ["resolve_tracking_uri", "ensure_experiment", "start_runs", "TrialRunCallback",
           "ROLE_TAG", "MODEL_TAG", "SESSION_TAG", "ERROR_TAG"]

ROLE_TAG = "raymlx.role"        # session | model | trial
MODEL_TAG = "raymlx.model"      # the spec's model name
SESSION_TAG = "raymlx.session"  # run id of the session run of one `raymlx tune`
ERROR_TAG = "raymlx.error"      # why a failed trial failed (last line of its traceback)


def resolve_tracking_uri(uri: str, base_dir: str | Path) -> str:
    """Make a relative ``sqlite:///file.db`` relative to the spec's folder, not to the working directory."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix):].startswith("/") and ":memory:" not in uri:
        return prefix + str((Path(base_dir) / uri[len(prefix):]).resolve())
    return uri


def _is_local_store(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:", "/", "postgresql", "mysql", "mssql"))


def ensure_experiment(name: str, *, tracking_uri: str, base_dir: str | Path) -> str:
    """Get or create the experiment; artifacts of a local store go to ``mlartifacts/`` beside the spec."""
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = (Path(base_dir) / "mlartifacts").resolve().as_uri() if _is_local_store(tracking_uri) else None
    return client.create_experiment(name, artifact_location=location)


def start_runs(client: MlflowClient, experiment_id: str, *, name: str, models: list[str]) -> tuple[str, dict[str, str]]:
    """Start the session run and one parent run per model under it.

    Returns:
        The session run id and each model's parent run id.
    """
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    session = client.create_run(experiment_id, run_name=f"{name} {stamp}", tags={ROLE_TAG: "session"})
    session_id = session.info.run_id
    parents = {}
    for model in models:
        run = client.create_run(experiment_id, run_name=model, tags={
            ROLE_TAG: "model", MODEL_TAG: model, SESSION_TAG: session_id, "mlflow.parentRunId": session_id})
        parents[model] = run.info.run_id
    return session_id, parents


class TrialRunCallback(MLflowLoggerCallback):
    """``MLflowLoggerCallback`` whose trial runs nest under their model's parent run."""

    def __init__(self, *, parent_runs: dict[str, str], session_id: str, experiment_id: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.parent_runs = parent_runs
        self.session_id = session_id
        self.experiment_id = experiment_id

    def setup(self, *args, **kwargs) -> None:
        # By id, not by name: the parent class would take $MLFLOW_EXPERIMENT_ID first, which
        # mlflow.set_experiment leaves behind, and log to whatever experiment ran last in this process.
        self.mlflow_util.setup_mlflow(tracking_uri=self.tracking_uri, registry_uri=self.registry_uri,
                                      experiment_id=self.experiment_id, tracking_token=self.tracking_token)
        self.tags = self.tags or {}
        self._trial_runs = {}

    def log_trial_start(self, trial) -> None:
        model = trial.config["model"]
        self.tags = {ROLE_TAG: "trial", MODEL_TAG: model, SESSION_TAG: self.session_id,
                     "mlflow.parentRunId": self.parent_runs[model]}
        super().log_trial_start(trial)

    def log_trial_result(self, iteration: int, trial, result: dict) -> None:
        # Tune's trial id is random hex: an all-digit one would be logged as a "metric".
        super().log_trial_result(iteration, trial, {k: v for k, v in result.items() if k != "trial_id"})

    def log_trial_end(self, trial, failed: bool = False) -> None:
        error = failure_of(trial.last_result) or (error_summary(trial) if failed else None)
        if error is not None:
            MlflowClient(self.tracking_uri).set_tag(self._trial_runs[trial], ERROR_TAG, error)
        super().log_trial_end(trial, failed=error is not None)
