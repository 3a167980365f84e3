"""The champion's refit on all rows, its MLflow model (pyfunc, signature, your files) and the registry alias."""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from raymlx.champion import CHAMPION_ALIAS
from raymlx.champion.predictor import ChampionModel, FittedPredictor, fit_predictor
from raymlx.champion.promotion import Decision, decide, score_current
from raymlx.folds import Fold
from raymlx.metrics import Metric
from raymlx.models.base import MODEL_PACKAGE, build_model, requirements_of
from raymlx.pipeline import build_pipeline
from raymlx.registry import resolve
from raymlx.select import LeaderboardRow
from raymlx.spec import Spec
from raymlx.spec_io import LoadedSpec

__all__ = ["Champion", "register_champion", "refit", "log_champion", "user_code_paths"]


@dataclass(frozen=True)
class Champion:
    """The registered winner of one ``raymlx tune``: under the ``champion`` alias when promoted, else ``challenger``."""

    model: str
    uri: str
    version: str
    decision: Decision


def user_code_paths(spec: Spec, base_dir: str) -> list[str]:
    """The user's own files named by the spec, shipped inside the champion's MLflow model."""
    references = [m.model for m in spec.models.values()] + [s.step for ss in spec.pipelines.values() for s in ss]
    files = {ref.partition(":")[0] for ref in references if ref.partition(":")[0].endswith(".py")}
    return sorted(str((Path(base_dir) / f).resolve()) for f in files)


def register_champion(loaded: LoadedSpec, frame: pd.DataFrame, best: LeaderboardRow, *, metric: Metric,
                      folds: list[Fold], tracking_uri: str, run_id: str, experiment_id: str,
                      force_promote: bool = False, predictor: FittedPredictor | None = None) -> Champion:
    """Refit the best configuration on every row (unless ``predictor`` is that refit already), log it in the
    session run, register it, and move the ``champion`` alias to it only if it beats the current champion
    rescored on ``folds`` (else ``challenger``).

    Returns:
        The registered version, its alias and the promotion decision.
    """
    spec = loaded.spec
    name = spec.registered_model_name
    mlflow.set_tracking_uri(tracking_uri)
    current = score_current(MlflowClient(tracking_uri), name, frame, folds, spec=spec, metric=metric)
    decision = decide(best.score, current, metric=metric, margin=spec.promotion.metric_margin, force=force_promote)
    predictor = predictor or refit(loaded, frame, best)
    metadata = {"model": best.model, "metric": metric.name, "score": best.score, "task": spec.task,
                "target": spec.data.target, "params": best.params}
    uri, version = log_champion(predictor, run_id=run_id, experiment_id=experiment_id, registered_model=name,
                                code_paths=user_code_paths(spec, loaded.base_dir), metadata=metadata,
                                sample=_sample_input(frame, spec, predictor), alias=decision.alias)
    tags = version_tags(loaded, frame, best, metric=metric, decision=decision)
    client = MlflowClient(tracking_uri)
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    return Champion(best.model, uri, version, decision)


def version_tags(loaded: LoadedSpec, frame: pd.DataFrame, best: LeaderboardRow, *, metric: Metric,
                 decision: Decision) -> dict[str, str]:
    """What a registered version carries: its score and spread, the data's fingerprint, the spec's hash, versions."""
    tags = {"raymlx.model": best.model, "raymlx.metric": metric.name, "raymlx.score": f"{best.score:.6g}",
            "raymlx.score_std": f"{best.score_std:.6g}", "raymlx.data_rows": str(len(frame)),
            "raymlx.data_sha256": data_fingerprint(frame),
            "raymlx.spec_sha256": hashlib.sha256(loaded.spec.model_dump_json().encode()).hexdigest(),
            "raymlx.version": importlib_metadata.version("raymlx"), "raymlx.promotion": decision.reason}
    commit = _git_commit(loaded.base_dir)
    if commit:
        tags["raymlx.git_commit"] = commit
    return tags


def data_fingerprint(frame: pd.DataFrame) -> str:
    """A hash of the data's values, index and column names: equal data, equal hash."""
    digest = hashlib.sha256(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes())
    digest.update(",".join(map(str, frame.columns)).encode())
    return digest.hexdigest()


def _git_commit(folder: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", folder, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None  # no git here
    return (done.stdout.strip() or None) if done.returncode == 0 else None


def refit(loaded: LoadedSpec, frame: pd.DataFrame, best: LeaderboardRow) -> FittedPredictor:
    """The best row's model and parameters with its pipeline, fitted on every row."""
    spec, base_dir = loaded.spec, loaded.base_dir
    entry = spec.models[best.model]
    model = build_model(resolve(entry.model, base_dir=base_dir, default_package=MODEL_PACKAGE),
                        {**entry.params, **best.params})
    pipeline = build_pipeline(entry.pipeline, spec.pipelines, base_dir=base_dir)
    forecasting = spec.task == "forecasting"
    future_columns = list(spec.data.future_columns)
    inputs = ([str(spec.data.time_column), *future_columns] if forecasting
              else [str(c) for c in frame.columns if c != spec.data.target])
    return fit_predictor(frame, pipeline, model, target=spec.data.target, input_columns=inputs,
                         forecasting=forecasting, time_column=spec.data.time_column,
                         horizon=spec.validation.horizon or 1, future_columns=future_columns)


def _sample_input(frame: pd.DataFrame, spec: Spec, predictor: FittedPredictor) -> pd.DataFrame:
    if spec.task != "forecasting":
        return frame[predictor.input_columns].head(5).reset_index(drop=True)
    horizon = spec.validation.horizon or 1
    times = predictor.times_after(frame, horizon)
    # The future columns' last known values stand in for theirs over the window (a typed example only).
    columns: dict[str, Any] = {str(spec.data.time_column): times}
    columns.update({c: frame[c].iloc[-horizon:].to_numpy() for c in spec.data.future_columns})
    return pd.DataFrame(columns)


def _requirements(extra_modules: list[str]) -> list[str]:
    wanted = ["mlflow", "pandas", "numpy", "scikit-learn", "cloudpickle", *extra_modules]
    pins = []
    for dist in dict.fromkeys(wanted):
        try:
            pins.append(f"{dist}=={importlib_metadata.version(dist)}")
        except importlib_metadata.PackageNotFoundError:
            continue
    return pins


def _register(client: MlflowClient, name: str, *, model_uri: str, model_id: str, run_id: str) -> str:
    """Register a logged model as a new version of ``name`` (created on first use); returns the version.

    Through the client, which, unlike ``log_model(registered_model_name=...)``, prints nothing.
    """
    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise
    return str(client.create_model_version(name, source=model_uri, run_id=run_id, model_id=model_id).version)


def log_champion(predictor: FittedPredictor, *, run_id: str, experiment_id: str, registered_model: str,
                 code_paths: list[str], metadata: dict[str, Any], sample: pd.DataFrame,
                 alias: str = CHAMPION_ALIAS) -> tuple[str, str]:
    """Log the champion as a pyfunc model in ``run_id``, register it and point ``alias`` at it.

    Returns:
        The registered model URI with alias, and the new version.
    """
    mlflow.set_experiment(experiment_id=experiment_id)  # the fluent API checks the run against it
    with mlflow.start_run(run_id=run_id):
        info = mlflow.pyfunc.log_model(
            name="model", python_model=ChampionModel(predictor, metadata),
            signature=infer_signature(sample, predictor.predict(sample)), input_example=sample,
            code_paths=[str(Path(p)) for p in code_paths] or None,
            pip_requirements=_requirements(list(requirements_of(predictor.model))),
        )
    version = _register(MlflowClient(), registered_model, model_uri=info.model_uri, model_id=info.model_id,
                        run_id=run_id)
    MlflowClient().set_registered_model_alias(registered_model, alias, version)
    return f"models:/{registered_model}@{alias}", version
