"""The champion's refit on all rows, its MLflow model (pyfunc, signature, your files) and the registry alias."""

from __future__ import annotations

import hashlib
import subprocess
import threading
from concurrent.futures import CancelledError, Executor, ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Callable

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.models.model import ModelInfo
from mlflow.tracking import MlflowClient

from raymlx.champion import CHAMPION_ALIAS
from raymlx.champion.predictor import ChampionModel, FittedPredictor, fit_predictor
from raymlx.champion.promotion import CurrentChampion, Decision, decide, score_current
from raymlx.folds import Fold
from raymlx.metrics import Metric
from raymlx.models.base import MODEL_PACKAGE, build_model, requirements_of
from raymlx.pipeline import build_pipeline
from raymlx.registry import resolve
from raymlx.select import LeaderboardRow
from raymlx.spec import Spec
from raymlx.spec_io import LoadedSpec

__all__ = ["Champion", "ChampionRegistration", "register_champion", "refit", "log_model", "register_logged",
           "log_champion", "user_code_paths"]


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
    with ThreadPoolExecutor(1, thread_name_prefix="raymlx-champion") as pool:
        registration = ChampionRegistration(pool, loaded, frame, best, metric=metric, folds=folds,
                                            tracking_uri=tracking_uri, run_id=run_id, experiment_id=experiment_id,
                                            fitted=None if predictor is None else (lambda: predictor))
        return registration.result(force_promote=force_promote)


class ChampionRegistration:
    """The champion's registration under way in a thread of ``pool`` (the current champion rescored on this run's
    folds, the winner refit and its MLflow model logged), overlapping whatever the caller does meanwhile (Ray's
    shutdown); :meth:`result` then decides, registers the logged model and moves the alias.

    One thread, not one per step: the steps hold Python's lock most of the time, and on a busy machine two of
    them at once took longer together than one after the other.

    Args:
        fitted: Returns the best configuration fitted on every row (default: :func:`refit`).
        timed: Context manager factory timing each step by name (default: untimed).
    """

    def __init__(self, pool: Executor, loaded: LoadedSpec, frame: pd.DataFrame, best: LeaderboardRow, *,
                 metric: Metric, folds: list[Fold], tracking_uri: str, run_id: str, experiment_id: str,
                 fitted: Callable[[], FittedPredictor] | None = None,
                 timed: Callable[[str], AbstractContextManager] = lambda name: nullcontext()) -> None:
        self.loaded, self.best, self.metric, self.tracking_uri, self.run_id = loaded, best, metric, tracking_uri, run_id
        self._cancelled = threading.Event()
        mlflow.set_tracking_uri(tracking_uri)
        self._done = pool.submit(self._run, frame, folds, experiment_id, fitted or (lambda: refit(loaded, frame, best)),
                                 timed)

    def _run(self, frame: pd.DataFrame, folds: list[Fold], experiment_id: str, fitted: Callable[[], FittedPredictor],
             timed: Callable[[str], AbstractContextManager]
             ) -> tuple[CurrentChampion | None, ModelInfo, dict[str, str]]:
        spec, best = self.loaded.spec, self.best
        with timed("current champion rescored"):
            current = score_current(MlflowClient(self.tracking_uri), spec.registered_model_name, frame, folds,
                                    spec=spec, metric=self.metric)
        self._go_on()
        predictor = fitted()
        self._go_on()
        metadata = {"model": best.model, "metric": self.metric.name, "score": best.score, "task": spec.task,
                    "target": spec.data.target, "params": best.params}
        with timed("champion model logged"):
            info = log_model(predictor, run_id=self.run_id, experiment_id=experiment_id,
                             code_paths=user_code_paths(spec, self.loaded.base_dir), metadata=metadata,
                             sample=_sample_input(frame, spec, predictor))
        return current, info, version_tags(self.loaded, frame, best, metric=self.metric)

    def cancel(self) -> None:
        """Stop after the current step (the caller was interrupted): nothing is logged or registered unless the
        model's log had begun."""
        self._cancelled.set()

    def _go_on(self) -> None:
        if self._cancelled.is_set():
            raise CancelledError("the champion's registration was cancelled")

    def result(self, *, force_promote: bool = False) -> Champion:
        """Wait for the thread, decide, register the logged model with its tags and point the alias at it.

        Raises:
            CancelledError: :meth:`cancel` stopped it.
            Exception: Whatever the refit, the model's log or the current champion's load raised.
        """
        spec = self.loaded.spec
        current, info, tags = self._done.result()
        decision = decide(self.best.score, current, metric=self.metric, margin=spec.promotion.metric_margin,
                          force=force_promote)
        uri, version = register_logged(info, registered_model=spec.registered_model_name, run_id=self.run_id,
                                       alias=decision.alias, tags={**tags, "raymlx.promotion": decision.reason},
                                       tracking_uri=self.tracking_uri)
        return Champion(self.best.model, uri, version, decision)


def version_tags(loaded: LoadedSpec, frame: pd.DataFrame, best: LeaderboardRow, *, metric: Metric) -> dict[str, str]:
    """What a registered version carries (besides the gate's decision): its score and spread, the data's
    fingerprint, the spec's hash, versions."""
    tags = {"raymlx.model": best.model, "raymlx.metric": metric.name, "raymlx.score": f"{best.score:.6g}",
            "raymlx.score_std": f"{best.score_std:.6g}", "raymlx.data_rows": str(len(frame)),
            "raymlx.data_sha256": data_fingerprint(frame),
            "raymlx.spec_sha256": hashlib.sha256(loaded.spec.model_dump_json().encode()).hexdigest(),
            "raymlx.version": importlib_metadata.version("raymlx")}
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


def log_model(predictor: FittedPredictor, *, run_id: str, experiment_id: str, code_paths: list[str],
              metadata: dict[str, Any], sample: pd.DataFrame) -> ModelInfo:
    """Log the champion as a pyfunc model (signature, input example, your files, pinned requirements) in ``run_id``."""
    mlflow.set_experiment(experiment_id=experiment_id)  # the fluent API checks the run against it
    with mlflow.start_run(run_id=run_id):
        return mlflow.pyfunc.log_model(
            name="model", python_model=ChampionModel(predictor, metadata),
            signature=infer_signature(sample, predictor.predict(sample)), input_example=sample,
            code_paths=[str(Path(p)) for p in code_paths] or None,
            pip_requirements=_requirements(list(requirements_of(predictor.model))),
        )


def register_logged(info: ModelInfo, *, registered_model: str, run_id: str, alias: str, tags: dict[str, str],
                    tracking_uri: str | None = None) -> tuple[str, str]:
    """Register a logged model as a new version of ``registered_model`` (created on first use) carrying ``tags``,
    and point ``alias`` at it.

    Through the client, which, unlike ``log_model(registered_model_name=...)``, prints nothing; the tags
    come with the version in one write.

    Returns:
        The registered model URI with alias, and the new version.
    """
    client = MlflowClient(tracking_uri)
    try:
        client.create_registered_model(registered_model)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise
    version = str(client.create_model_version(registered_model, source=info.model_uri, run_id=run_id, tags=tags,
                                              model_id=info.model_id).version)
    client.set_registered_model_alias(registered_model, alias, version)
    return f"models:/{registered_model}@{alias}", version


def log_champion(predictor: FittedPredictor, *, run_id: str, experiment_id: str, registered_model: str,
                 code_paths: list[str], metadata: dict[str, Any], sample: pd.DataFrame,
                 alias: str = CHAMPION_ALIAS) -> tuple[str, str]:
    """Log the champion as a pyfunc model in ``run_id``, register it and point ``alias`` at it.

    Returns:
        The registered model URI with alias, and the new version.
    """
    info = log_model(predictor, run_id=run_id, experiment_id=experiment_id, code_paths=code_paths,
                     metadata=metadata, sample=sample)
    return register_logged(info, registered_model=registered_model, run_id=run_id, alias=alias, tags={})
