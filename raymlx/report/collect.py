"""The report of a run that just ended: each model's best configuration refit on the folds, its
charts and explanations, logged to its MLflow run, then the HTML file beside the spec."""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pandas as pd

from raymlx.defaults import prepare
from raymlx.experiment import ExperimentResult, compute_fold_features
from raymlx.folds import make_folds
from raymlx.metrics import get_metric
from raymlx.models.base import MODEL_PACKAGE, build_model
from raymlx.registry import resolve
from raymlx.report._section import Section
from raymlx.report._store import OOF_FILE, SHAP_FILE, find_session, log_section, model_runs, session_runs
from raymlx.report.charts import diagnostics
from raymlx.report.explain import explain
from raymlx.report.oof import fit_last, oof_frame
from raymlx.report.search import search_charts, study_from_runs
from raymlx.spec import Spec
from raymlx.spec_io import LoadedSpec
from raymlx.tracking import MODEL_TAG

__all__ = ["model_section", "collect_sections", "target_around_cutoffs"]

logger = logging.getLogger(__name__)


def target_around_cutoffs(frame: pd.DataFrame, spec: Spec, folds: list) -> pd.Series | None:
    """Forecasting: the target from a few windows before the first cutoff to the end (drawn behind forecasts)."""
    if spec.task != "forecasting" or not folds:
        return None
    first = max(0, int(folds[0].valid[0]) - 4 * len(folds[0].valid))
    return frame[spec.data.target].iloc[first:]


def _trial_charts(section: Section, runs: list, spec: Spec, *, metric: str, mode: str) -> None:
    study = study_from_runs(runs, spec.models[section.name].search.space, metric=metric, mode=mode)
    charts, notes = search_charts(study, metric=metric)
    section.charts += charts
    section.notes += notes


def _guarded(section: Section, what: str, work) -> Any:
    """Run one part of a section; a part that fails becomes a note instead of stopping the report."""
    try:
        return work()
    except ImportError as exc:
        section.notes.append(f"{what}: {exc}")
    except Exception as exc:
        logger.warning("report of %s: %s failed", section.name, what, exc_info=True)
        section.notes.append(f"{what} failed: {type(exc).__name__}: {exc}")
    return None


def model_section(name: str, run_id: str, row, spec: Spec, features: list, trials: list, *, base_dir: str,
                  series: pd.Series | None = None) -> tuple[Section, dict[str, pd.DataFrame]]:
    """One model's section (search, diagnostics, explanations) and its tables (out-of-fold predictions, SHAP values).

    Args:
        name: The model's name in the spec.
        run_id: Its parent MLflow run.
        row: Its :class:`raymlx.select.LeaderboardRow`.
        spec: The experiment spec.
        features: Its pipeline's features on every fold (as the trials saw them).
        trials: Its trial runs.
        base_dir: The spec's folder.
        series: Forecasting: the target around the cutoffs.
    """
    metric = get_metric(spec.metric_spec.name, spec.metric_spec.mode, base_dir=base_dir)
    section, frames = Section(name, run_id), dict[str, pd.DataFrame]()
    section.facts.update(best_params=row.params, trials=row.trials, failed=row.failed)
    _guarded(section, "search plots", lambda: _trial_charts(section, trials, spec, metric=metric.name, mode=metric.mode))
    if row.score != row.score:
        section.notes.append("Every trial failed: no configuration to diagnose or explain.")
        return section, frames
    oof = _guarded(section, "out-of-fold predictions", lambda: oof_frame(row.predictions or {}, features,
                                                                         task=spec.task))
    if oof is not None:
        frames[OOF_FILE] = oof
        section.facts.update(fold_scores=_fold_scores(oof, metric))
        section.charts += _guarded(section, "diagnostics", lambda: diagnostics(oof, task=spec.task, series=series)) or []
    _explain_best(section, frames, row, spec, features, base_dir=base_dir)
    return section, frames


def _explain_best(section: Section, frames: dict, row, spec: Spec, features: list, *, base_dir: str) -> None:
    """Fit the best configuration on the last fold and add its explanations (and SHAP values) to the section."""
    entry = spec.models[section.name]
    reference = resolve(entry.model, base_dir=base_dir, default_package=MODEL_PACKAGE)
    fitted = _guarded(section, "refit on the last fold", lambda: fit_last(
        lambda: build_model(reference, {**entry.params, **row.params}), features, cpus=entry.resources.cpu))
    if fitted is None:
        return
    section.facts["refit_seconds"] = round(fitted[1], 3)
    settings = spec.report
    explained = _guarded(section, "explanations", lambda: explain(
        fitted[0], features[-1], task=spec.task, sample=settings.shap_sample, background=settings.shap_background,
        budget_s=settings.time_budget_s, seed=spec.validation.seed))
    if explained is not None:
        section.charts += explained.charts
        section.notes += explained.notes
        section.facts.update(explained.facts)
        if explained.values is not None:
            frames[SHAP_FILE] = explained.values


def _fold_scores(oof: pd.DataFrame, metric) -> list[float] | None:
    """Each fold's score recomputed from the predictions (matches the trial's when the model is deterministic)."""
    if metric.needs_proba or metric.takes_labels:
        return None
    return [round(float(metric.function(rows["y_true"].to_numpy(), rows["y_pred"].to_numpy())), 6)
            for _, rows in oof.groupby("fold")]


def collect_sections(loaded: LoadedSpec, frame: pd.DataFrame, result: ExperimentResult):
    """Draw and log every model's section; returns the session, its trial runs by model and the sections."""
    folds = make_folds(frame, loaded.spec)
    loaded, _ = prepare(loaded, folds)  # the spec as tuned: seeds filled in, the baseline's entry added
    spec, base_dir = loaded.spec, loaded.base_dir
    features = compute_fold_features(spec, frame, folds, base_dir=base_dir)
    session = find_session(result.tracking_uri, spec.experiment_name, result.session_run_id)
    parents = {name: run.info.run_id for name, run in model_runs(session).items()}
    trials = defaultdict(list)
    for run in session_runs(session, "trial"):
        trials[run.data.tags.get(MODEL_TAG)].append(run)
    series = target_around_cutoffs(frame, spec, folds)
    jobs = [(row.model, parents[row.model], row, spec, features[spec.models[row.model].pipeline], trials[row.model],
             base_dir, series) for row in result.leaderboard]
    sections = []
    with _pool(len(jobs)) as pool:
        for section, frames in pool.map(_timed_section, jobs):  # in order: each is logged while later ones draw
            log_section(session.client, section, frames=frames)
            sections.append(section)
    return session, dict(trials), sections


def _timed_section(job: tuple) -> tuple[Section, dict[str, pd.DataFrame]]:
    name, run_id, row, spec, features, trials, base_dir, series = job
    started = time.perf_counter()
    section, frames = model_section(name, run_id, row, spec, features, trials, base_dir=base_dir, series=series)
    section.facts["report_seconds"] = round(time.perf_counter() - started, 3)
    return section, frames


def _pool(jobs: int):
    """Processes that draw sections side by side: forked from this one, so they start with its imports
    (the command preloads them while Tune runs) and need nothing sent but the job. In this process
    where fork is not the platform's safe default, or for a single job."""
    workers = min(jobs, os.cpu_count() or 1)
    if workers < 2 or sys.platform != "linux":
        return _InProcess()
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))


class _InProcess:
    """The executor interface, run in this process."""

    def __enter__(self) -> _InProcess:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def map(self, function, jobs):
        return map(function, jobs)
