"""Each model's section of the report of a run: its search, its diagnostics from the best trial's
predictions, its explanations from the best configuration refit on the last fold, logged to its MLflow run."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import pandas as pd
from threadpoolctl import threadpool_limits

from raymlx.folds import make_folds
from raymlx.metrics import get_metric
from raymlx.models.base import MODEL_PACKAGE, build_model
from raymlx.registry import resolve
from raymlx.report._plot import drawing
from raymlx.report._priority import priority_of
from raymlx.report._section import OOF_FILE, SHAP_FILE, Section
from raymlx.report.charts import diagnostics
from raymlx.report.explain import explain
from raymlx.report.oof import fit_last, oof_frame
from raymlx.report.search import TrialRecord, search_charts, study_from_trials
from raymlx.select import LeaderboardRow
from raymlx.spec import Spec

__all__ = ["model_section", "SectionJob", "Drawn", "draw_section", "target_around_cutoffs"]

logger = logging.getLogger(__name__)
PART_SECONDS = "part_cpu_seconds"  # a section's fact: CPU seconds of each part, by part


def target_around_cutoffs(frame: pd.DataFrame, spec: Spec, folds: list) -> pd.Series | None:
    """Forecasting: the target from a few windows before the first cutoff to the end (drawn behind forecasts)."""
    if spec.task != "forecasting" or not folds:
        return None
    first = max(0, int(folds[0].valid[0]) - 4 * len(folds[0].valid))
    return frame[spec.data.target].iloc[first:]


def _trial_charts(section: Section, trials: list[TrialRecord], spec: Spec, *, metric: str, mode: str) -> None:
    study = study_from_trials(trials, spec.models[section.name].search.space, mode=mode)
    charts, notes = search_charts(study, metric=metric)
    section.charts += charts
    section.notes += notes


def _guarded(section: Section, what: str, work) -> Any:
    """Run one part of a section, its CPU seconds kept in the section's facts; a part that fails becomes a note
    instead of stopping the report."""
    started = time.process_time()
    try:
        return work()
    except ImportError as exc:
        section.notes.append(f"{what}: {exc}")
    except Exception as exc:
        logger.warning("report of %s: %s failed", section.name, what, exc_info=True)
        section.notes.append(f"{what} failed: {type(exc).__name__}: {exc}")
    finally:
        section.facts.setdefault(PART_SECONDS, {})[what] = round(time.process_time() - started, 3)
    return None


def model_section(name: str, run_id: str, row, spec: Spec, features: list, trials: list[TrialRecord], *, base_dir: str,
                  series: pd.Series | None = None) -> tuple[Section, dict[str, pd.DataFrame]]:
    """One model's section (search, diagnostics, explanations) and its tables (out-of-fold predictions, SHAP values).

    Args:
        name: The model's name in the spec.
        run_id: Its parent MLflow run.
        row: Its :class:`raymlx.select.LeaderboardRow`.
        spec: The experiment spec.
        features: Its pipeline's features on every fold (as the trials saw them).
        trials: Its trials (:func:`raymlx.report.search.trial_records`).
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


@dataclass(frozen=True)
class SectionJob:
    """What a report process needs to draw one model's section: no MLflow (the driver reads and writes it)."""

    row: LeaderboardRow  # its best trial
    run_id: str  # its parent run
    trials: list[TrialRecord]
    spec: Spec
    features: list
    base_dir: str
    frame: pd.DataFrame | None = None  # forecasting: the data, drawn behind the forecasts


@dataclass(frozen=True)
class Drawn:
    """A section drawn, with its tables (out-of-fold predictions, SHAP values) by artifact path, to be logged."""

    section: Section
    frames: dict[str, pd.DataFrame]


def draw_section(job: SectionJob) -> Drawn:
    """Draw one model's section (in a report process)."""
    started, cpu = time.perf_counter(), time.process_time()
    priority = priority_of(0)  # the lowest while Tune runs; its own once Tune has ended (where permitted)
    series = None if job.frame is None else target_around_cutoffs(job.frame, job.spec, make_folds(job.frame, job.spec))
    with threadpool_limits(limits=1), drawing():  # one core a report process: native pools only spin on a busy machine
        section, frames = model_section(job.row.model, job.run_id, job.row, job.spec, job.features, job.trials,
                                        base_dir=job.base_dir, series=series)
    section.facts["report_seconds"] = round(time.perf_counter() - started, 3)
    section.facts["report_cpu_seconds"] = round(time.process_time() - cpu, 3)
    section.facts["cpu_priority"] = priority
    return Drawn(section, frames)
