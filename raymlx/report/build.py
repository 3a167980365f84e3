"""The report of a session: made right after ``raymlx tune``, or rebuilt later from MLflow alone."""

from __future__ import annotations

import io
import json
import logging
import tempfile
import time
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any

import pandas as pd

from raymlx.report._section import SUMMARY_FILE, Chart, Report, Section
from raymlx.report._store import (SessionRef, download, find_session, log_files, model_runs, read_chart, read_json,
                                  read_section, session_runs)
from raymlx.folds import fold_plan, make_folds
from raymlx.report.html import render
from raymlx.report.overview import (baseline_of, best_trial, draw_overview, fold_scores, metric_of, summarize,
                                    versions)
from raymlx.report.search import search_charts, study_from_trials, trial_records
from raymlx.spec import Spec
from raymlx.spec_io import LoadedSpec
from raymlx.tracking import MODEL_TAG

__all__ = ["finish_report", "plan_of", "load_report", "write_html", "REPORT_FILE"]

logger = logging.getLogger(__name__)
REPORT_FILE = "report.html"  # the HTML report, on the session run


def _leaderboard_records(csv: str | None) -> list[dict[str, Any]]:
    return [] if not csv else pd.read_csv(io.StringIO(csv)).to_dict("records")


def plan_of(spec: Spec, frame: pd.DataFrame) -> list[dict]:
    """The fold plan of a spec on its data, as the session logged it (``folds.json``), without reading it back."""
    return fold_plan(frame, make_folds(frame, spec))


def _scores_of_trials(trials: dict[str, list], order: list[str], *, metric: str, mode: str) -> dict[str, list[float]]:
    """Each model's best trial run's score on every fold, in ``order``."""
    scores = {}
    for name in order:
        best = best_trial(trials.get(name, []), metric=metric, mode=mode)
        scores[name] = fold_scores(best, metric) if best is not None else []
    return scores


def _summary(spec: Spec, leaderboard: list[dict], *, metric, frame: pd.DataFrame | None, plan: list[dict] | None,
             session: SessionRef, champion_uri: str | None) -> dict[str, Any]:
    baseline = baseline_of({n: m.model for n, m in spec.models.items()})
    summary = summarize(leaderboard, baseline=baseline, mode=metric.mode)
    v = spec.validation
    folds = f"{spec.strategy}, {len(plan) if plan else v.folds} folds" + (f", horizon {v.horizon}" if v.horizon else "")
    summary.update(metric=f"{metric.name} ({metric.mode})", task=spec.task, folds=folds, baseline_model=baseline,
                   seeds=f"folds {v.seed}; search " + ", ".join(f"{n} {m.search.seed}" for n, m in spec.models.items()),
                   session_run=session.run_id, tracking_uri=session.client.tracking_uri, versions=versions(),
                   registered_model=champion_uri)
    if frame is not None:
        span = f"; {frame.index.min()} to {frame.index.max()}" if spec.task == "forecasting" else ""
        summary["data"] = f"{spec.data.uri}: {len(frame)} rows, {frame.shape[1]} columns, target {spec.data.target}{span}"
        summary["data_start"] = str(frame.index.min()) if spec.task == "forecasting" else None
    return summary


def finish_report(loaded: LoadedSpec, frame: pd.DataFrame, result, *, sections: dict[str, Future],
                  pool: Executor, overview: Future | None = None, plan: list[dict] | None = None,
                  timeline: dict[str, float] | None = None) -> Path:
    """Log the overview and write the HTML file of a run that ended, once each model's section is drawn.

    Args:
        loaded: The spec that ran.
        frame: Its data, as validated.
        result: What :func:`raymlx.experiment.run_experiment` returned.
        sections: Each model's section, being drawn (and logged to its run) in ``pool``.
        pool: Where the overview charts are drawn, unless ``overview`` is being drawn already.
        overview: The overview charts (:func:`draw_overview`), handed to ``pool`` as soon as the last model ended.
        plan: The fold plan that overview draws (:func:`plan_of`); default: made here.
        timeline: When things happened so far (``time.time()``), logged in the outline in seconds from its entry
            "tuning ended" (or from this call): the report's tail, step by step.
    """
    started, clock = time.perf_counter(), time.time()
    spec = loaded.spec
    metric = metric_of(spec, loaded.base_dir)
    session = find_session(result.tracking_uri, spec.experiment_name, result.session_run_id)
    plan = plan if plan is not None else plan_of(spec, frame)
    leaderboard = [{**r, "params": str(r["params"])} for r in _leaderboard_records(_leaderboard_csv(result))]
    champion = (f"{result.champion_uri} (version {result.champion_version})" if result.champion_uri else None)
    summary = _summary(spec, leaderboard, metric=metric, frame=frame, plan=plan, session=session, champion_uri=champion)
    order = [row.model for row in result.leaderboard]
    if overview is None:
        overview = pool.submit(draw_overview, spec, loaded.base_dir, {r.model: list(r.fold_scores) for r in
                                                                      result.leaderboard},
                               plan, data_start=summary.get("data_start"))
    drawn = [_result(sections[name]) for name in order]
    timeline = {**(timeline or {}), "report finishing": clock, "sections drawn": time.time()}
    charts: list[Chart] = _result(overview)
    timeline["overview drawn"] = time.time()
    summary["report_seconds"] = round(time.perf_counter() - started, 1)  # what the report adds after the run
    report = Report(f"{spec.name}: raymlx report", summary, leaderboard, charts, drawn)
    text = render(report)
    zero = timeline.get("tuning ended", clock)
    outline = {"title": report.title, "summary": summary, "overview": [c.meta() for c in charts], "models": order,
               "timeline_s": {k: round(v - zero, 2) for k, v in sorted(timeline.items(), key=lambda kv: kv[1])}}
    log_files(session.client, session.run_id, {**{c.path: c.png for c in charts}, REPORT_FILE: text.encode(),
                                               SUMMARY_FILE: json.dumps(outline, indent=1, default=str).encode()})
    return write_html(report, Path(loaded.base_dir) / spec.report.output, text=text)


def _result(future: Future) -> Any:
    """What a future holds, through a future handed over to the pool (a future of a future)."""
    value = future.result()
    return value.result() if isinstance(value, Future) else value


def _leaderboard_csv(result) -> str:
    from raymlx.select import leaderboard_frame

    return leaderboard_frame(result.leaderboard).to_csv(index=False)


def write_html(report: Report, path: Path, *, text: str | None = None) -> Path:
    """Write the report's HTML to ``path`` (folders made as needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text if text is not None else render(report), encoding="utf-8")
    return path


def load_report(loaded: LoadedSpec, *, tracking_uri: str, run_id: str | None = None) -> Report:
    """Rebuild a session's report from MLflow alone: what the session logged, and the trial runs for anything missing.

    Args:
        loaded: The spec of the experiment (names its experiment, models and search spaces).
        tracking_uri: The MLflow store.
        run_id: The session run; default: the experiment's latest.

    Raises:
        UserInputError: When the spec never ran there, or the run is unknown or not a session of it.
    """
    spec = loaded.spec
    session = find_session(tracking_uri, spec.experiment_name, run_id)
    with tempfile.TemporaryDirectory(prefix="raymlx-report-") as folder:
        root = download(session.client, session.run_id, ("report", "plots", "leaderboard.csv", "folds.json"),
                        Path(folder))
        outline = read_json(root, SUMMARY_FILE)
        board = root / "leaderboard.csv"
        leaderboard = _leaderboard_records(board.read_text() if board.is_file() else None)
        plan = read_json(root, "folds.json")
        overview = [read_chart(root, c) for c in outline["overview"]] if outline else None
    leaderboard = [{**r, "params": str(r["params"])} for r in leaderboard]
    metric = metric_of(spec, loaded.base_dir)
    order = _order(outline, leaderboard, spec)
    trials = _trials_by_model(session) if outline is None else None
    runs = model_runs(session)
    sections = [_stored_or_drawn(name, runs.get(name), session, spec, metric, trials) for name in order]
    if outline is None:
        summary = _summary(spec, leaderboard, metric=metric, frame=None, plan=plan, session=session, champion_uri=None)
        scores = _scores_of_trials(trials or {}, order, metric=metric.name, mode=metric.mode)
        overview = draw_overview(spec, loaded.base_dir, scores, plan, data_start=None)
        return Report(f"{spec.name}: raymlx report", summary, leaderboard, overview, sections)
    return Report(outline["title"], outline["summary"], leaderboard, overview or [], sections)


def _order(outline: dict | None, leaderboard: list[dict], spec: Spec) -> list[str]:
    if outline is not None:
        return list(outline["models"])
    return [r["model"] for r in leaderboard] or list(spec.models)


def _trials_by_model(session: SessionRef) -> dict[str, list]:
    grouped: dict[str, list] = {}
    for run in session_runs(session, "trial"):
        grouped.setdefault(run.data.tags.get(MODEL_TAG), []).append(run)
    return grouped


def _stored_or_drawn(name: str, run, session: SessionRef, spec: Spec, metric, trials: dict | None) -> Section:
    """The section the session logged; for a session that ran without reports, its search drawn from the trial runs."""
    if run is None:
        return Section(name, "", notes=["This session has no run of this model."])
    stored = read_section(session.client, name, run.info.run_id)
    if stored is not None:
        return stored
    trials = trials if trials is not None else _trials_by_model(session)
    section = Section(name, run.info.run_id, notes=[
        "This session ran without the report: only its search is shown, drawn from the trial runs."])
    if name in spec.models:
        study = study_from_trials(trial_records(trials.get(name, []), metric=metric.name),
                                  spec.models[name].search.space, mode=metric.mode)
        charts, notes = search_charts(study, metric=metric.name)
        section.charts, section.notes = charts, section.notes + notes
    return section

