"""The driver's side of each model's section: the job a report process draws it from (the model's trials read from
MLflow here), and the drawn section's artifacts logged to the model's run.

The report's processes never import MLflow (nor Ray): a second of imports and a store to open in each, for
reads and writes the driver, which holds both already, makes in milliseconds.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import pandas as pd
from mlflow.tracking import MlflowClient

from raymlx.report._section import Section
from raymlx.report._store import find_session, log_section, model_runs, model_trials
from raymlx.report.collect import Drawn, SectionJob
from raymlx.report.overview import metric_of
from raymlx.report.search import trial_records
from raymlx.spec import Spec
from raymlx.spec_io import LoadedSpec

if TYPE_CHECKING:
    from raymlx.experiment import ExperimentResult
    from raymlx.model_end import ModelEnded

__all__ = ["section_job", "late_jobs", "log_drawn"]


def section_job(ended: ModelEnded, frame: pd.DataFrame, *, base_dir: str, tracking_uri: str) -> SectionJob:
    """The job of a model whose trials have just ended (and whose trial runs are in MLflow)."""
    runs, name = ended.runs, ended.row.model
    trials = model_trials(_client(tracking_uri), runs.experiment_id, runs.session_id, name)
    return SectionJob(ended.row, runs.parents[name], trial_records(trials, metric=metric_of(ended.spec, base_dir).name),
                      ended.spec, ended.features, base_dir, _forecast_frame(frame, ended.spec))


def late_jobs(loaded: LoadedSpec, frame: pd.DataFrame, result: ExperimentResult, rows: list) -> list[SectionJob]:
    """The jobs of models drawn after the run (a resumed session's, or all when the report is made after it):
    their features computed again."""
    if not rows:
        return []
    from raymlx.defaults import prepare
    from raymlx.experiment import compute_fold_features
    from raymlx.folds import make_folds

    folds = make_folds(frame, loaded.spec)
    loaded, _ = prepare(loaded, folds)  # the spec as tuned: seeds filled in, the baseline's entry added
    spec, base_dir = loaded.spec, loaded.base_dir
    features = compute_fold_features(spec, frame, folds, base_dir=base_dir)
    session = find_session(result.tracking_uri, spec.experiment_name, result.session_run_id)
    parents = {name: run.info.run_id for name, run in model_runs(session).items()}
    metric = metric_of(spec, base_dir).name
    return [SectionJob(row, parents[row.model], trial_records(model_trials(
                session.client, session.experiment_id, session.run_id, row.model), metric=metric),
            spec, features[spec.models[row.model].pipeline], base_dir, _forecast_frame(frame, spec)) for row in rows]


def log_drawn(tracking_uri: str, drawn: Drawn) -> Section:
    """Log a drawn section, with its tables, to its model's run; the section."""
    log_section(_client(tracking_uri), drawn.section, frames=drawn.frames)
    return drawn.section


def _forecast_frame(frame: pd.DataFrame, spec: Spec) -> pd.DataFrame | None:
    return frame if spec.task == "forecasting" else None


@functools.lru_cache(maxsize=4)
def _client(tracking_uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri)
