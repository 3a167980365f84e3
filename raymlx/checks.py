"""Rules across spec sections and against the code and data the spec names, checked before Ray starts.

Each ``check_*`` returns ``(field path, message)`` pairs; :func:`validate` runs them
all and raises one :class:`~raymlx.errors.SpecError` listing every problem.
"""

from __future__ import annotations

import base64
import os
import time
import urllib.error
import urllib.request
from typing import Iterator
from urllib.parse import urlsplit

import pandas as pd

from raymlx.data import missing_columns, prepare_frame, read_table, resolve_uri, stray_text
from raymlx.errors import DataError, SpecError, redact, shorten
from raymlx.folds import make_folds
from raymlx.metrics import BUILTIN_METRICS
from raymlx.models.base import MODEL_PACKAGE, NotAModel, is_estimator_class, parameter_names
from raymlx.models.families import learns_from_rows, task_problem
from raymlx.pipeline import STEP_PACKAGE, Pipeline, build_pipeline, expand_steps, make_step
from raymlx.registry import UnresolvedReference, resolve, suggest
from raymlx.space import continuous_params, grid_size
from raymlx.spec import Spec
from raymlx.spec_io import LoadedSpec
from raymlx.store import resolve_tracking_uri

__all__ = ["validate", "check_task", "check_pipelines", "check_references", "check_model_forms", "check_search",
           "check_metric", "check_leakage", "check_data", "check_pipeline_columns", "check_tracking"]

Found = Iterator[tuple[tuple, str]]
GRID_LIMIT = 10_000


def check_task(spec: Spec) -> Found:
    """Forecasting needs a time column, a horizon and a time-ordered fold plan; a sliding window needs its size.

    Future columns are for forecasting only and are inputs: neither the target nor the time column.
    """
    if spec.strategy == "sliding_window" and spec.validation.window is None:
        yield (("validation",), "sliding_window needs 'window' (training rows before each cutoff)")
    if spec.task != "forecasting":
        if spec.data.future_columns:
            yield (("data", "future_columns"), f"future_columns are for forecasting only, but the task is '{spec.task}'")
        return
    yield from _check_future_columns(spec)
    if spec.data.time_column is None:
        yield (("data",), "forecasting needs 'time_column'")
    if spec.validation.horizon is None:
        yield (("validation",), "forecasting needs 'horizon' (rows predicted after each cutoff)")
    if spec.strategy not in ("expanding_window", "sliding_window"):
        yield (("validation", "strategy"),
               f"forecasting needs expanding_window or sliding_window, but got '{spec.strategy}'")


def _check_future_columns(spec: Spec) -> Found:
    roles = {spec.data.target: "the target", spec.data.time_column: "the time column"}
    for i, column in enumerate(spec.data.future_columns):
        if column in roles:
            yield (("data", "future_columns", i),
                   f"future_columns must not hold {roles[column]} '{column}': a future column is an input "
                   "known over the forecast window")


def check_metric(spec: Spec, base_dir: str) -> Found:
    """A built-in metric fits the task; a user's metric imports and states its mode."""
    metric = spec.metric_spec
    if metric.name in BUILTIN_METRICS:
        if spec.task not in BUILTIN_METRICS[metric.name].tasks:
            yield (("metric", "name"), f"metric '{metric.name}' does not fit task '{spec.task}'")
        return
    if ":" not in metric.name:
        hint = suggest(metric.name, BUILTIN_METRICS) or (
            f" (built-ins: {', '.join(BUILTIN_METRICS)}); name your own as module:function")
        yield (("metric", "name"), f"unknown metric '{metric.name}'{hint}")
        return
    try:
        resolve(metric.name, base_dir=base_dir)
    except UnresolvedReference as exc:
        yield (("metric", "name"), str(exc))
    if metric.mode is None:
        yield (("metric",), "a metric of your own needs 'mode: min' or 'mode: max'")


def check_pipelines(spec: Spec) -> Found:
    """Every pipeline a model names exists, and pipelines do not refer to each other in a cycle."""
    for name, model in spec.models.items():
        if model.pipeline is not None and model.pipeline not in spec.pipelines:
            yield (("models", name, "pipeline"),
                   f"unknown pipeline '{model.pipeline}'{suggest(model.pipeline, spec.pipelines)}")
    cycles = set()
    for name in spec.pipelines:
        try:
            expand_steps(name, spec.pipelines)
        except ValueError as exc:
            cycle = frozenset(str(exc).rpartition(": ")[2].split(" -> "))
            if cycle not in cycles:  # one cycle, reported once, at the first pipeline in it
                cycles.add(cycle)
                yield (("pipelines", name), str(exc))


def check_references(spec: Spec, base_dir: str) -> Found:
    """Every model and step reference imports, and a step is a step (not a model)."""
    for name, model in spec.models.items():
        try:
            resolve(model.model, base_dir=base_dir, default_package=MODEL_PACKAGE)
        except UnresolvedReference as exc:
            yield (("models", name, "model"), _with_estimator_hint(str(exc), model.model))
    for name, steps in spec.pipelines.items():
        for i, step in enumerate(steps):
            if step.step in spec.pipelines:
                continue
            try:
                obj = resolve(step.step, base_dir=base_dir, default_package=STEP_PACKAGE)
            except UnresolvedReference as exc:
                yield (("pipelines", name, i, "step"), str(exc))
                continue
            if is_estimator_class(obj) and not callable(getattr(obj, "transform", None)):
                yield (("pipelines", name, i, "step"),
                       f"'{step.step}' is a model, not a step; a step is a class with fit(frame) and "
                       "transform(frame), or a function f(frame, **params) -> frame (name models under models:)")


def _with_estimator_hint(message: str, reference: str) -> str:
    """A bare scikit-learn class name (``RandomForestRegressor``) gets its full reference suggested instead."""
    if ":" in reference or "did you mean" in message:
        return message
    from sklearn.utils.discovery import all_estimators

    for class_name, cls in all_estimators():
        if class_name == reference:
            public = ".".join(cls.__module__.split(".")[:2])  # sklearn.ensemble, not sklearn.ensemble._forest
            return f"unknown built-in model '{reference}'; did you mean '{public}:{class_name}'?"
    return message


def check_model_forms(spec: Spec, base_dir: str) -> Found:
    """Every model reference is an estimator class, a Darts class, a train function or a factory that serves the task."""
    for name, model in spec.models.items():
        try:
            obj = resolve(model.model, base_dir=base_dir, default_package=MODEL_PACKAGE)
        except UnresolvedReference:
            continue  # reported by check_references
        try:
            problem = task_problem(obj, model.model, spec.task, dict(model.params))
        except NotAModel as exc:
            problem = str(exc)
        if problem:
            yield (("models", name, "model"), problem)
        elif (spec.task == "forecasting" and model.pipeline is None and not spec.data.future_columns
              and learns_from_rows(obj, dict(model.params))):
            yield (("models", name), f"'{model.model}' learns from feature columns, but without a pipeline it gets "
                   "none (no column is known at the forecast cutoff); give it a pipeline of lags (see the lags, "
                   "rolling and calendar steps) or use a forecaster (NaiveSeasonal, darts.models:ExponentialSmoothing)")


def check_leakage(spec: Spec, base_dir: str) -> Found:
    """No forecasting step looks closer into the past than the horizon.

    A step class may define ``leak_check(self, horizon) -> str | None``; a message
    means the step, as configured, would see values unknown at the cutoff.
    """
    if spec.task != "forecasting" or spec.validation.horizon is None:
        return
    for name, steps in spec.pipelines.items():
        for i, step in enumerate(steps):
            if step.step in spec.pipelines:
                continue
            try:
                obj = resolve(step.step, base_dir=base_dir, default_package=STEP_PACKAGE)
                check = getattr(obj, "leak_check", None)
                message = check(make_step(obj, dict(step.params)), spec.validation.horizon) if check else None
            except (UnresolvedReference, TypeError, ValueError):
                continue  # reported by check_references, or by the step when it runs
            if message:
                yield (("pipelines", name, i, "params"), message)


def check_search(spec: Spec, base_dir: str) -> Found:
    """Searched and fixed parameters exist on the model; a grid is finite."""
    for name, model in spec.models.items():
        try:
            accepted = parameter_names(resolve(model.model, base_dir=base_dir, default_package=MODEL_PACKAGE))
        except (UnresolvedReference, TypeError, ValueError):
            accepted = None  # reported by check_references, or a signature we cannot read
        for section in ("params", "search"):
            keys = model.params if section == "params" else model.search.space
            for key in keys:
                if accepted is not None and key not in accepted:
                    where = ("models", name, *(("params",) if section == "params" else ("search", "space")), key)
                    yield (where, f"'{model.model}' has no parameter '{key}'{suggest(key, accepted)}")
        if model.search.algorithm == "grid":
            yield from _check_grid(name, model.search.space)


def _check_grid(name: str, space: dict) -> Found:
    for param in continuous_params(space):
        yield (("models", name, "search", "space", param),
               f"grid search cannot enumerate float parameter '{param}': give it a step or use choice values")
    size = grid_size(space)
    if not continuous_params(space) and size > GRID_LIMIT:
        yield (("models", name, "search", "space"), f"a grid of at most {GRID_LIMIT} points must hold, but got {size:g}")


def check_pipeline_columns(spec: Spec, base_dir: str, frame: pd.DataFrame) -> Found:
    """Each pipeline runs on the data, and every column a step names is there when the step comes.

    Steps skip absent columns on purpose (a served row has no target), so a misspelt name would
    otherwise be dropped without a word.
    """
    for name, steps in spec.pipelines.items():
        rows = frame
        for i, step in enumerate(steps):
            try:
                pipeline = (build_pipeline(step.step, spec.pipelines, base_dir=base_dir) if step.step in spec.pipelines
                            else Pipeline([make_step(resolve(step.step, base_dir=base_dir,
                                                             default_package=STEP_PACKAGE), dict(step.params))]))
            except (UnresolvedReference, ValueError, TypeError):
                break  # reported by check_references, check_pipelines, or the step's own parameter check
            yield from _missing_step_columns(("pipelines", name, i, "params", "columns"), step.params, rows)
            try:
                rows = pipeline.fit(rows).transform(rows)
            except Exception as exc:  # noqa: BLE001 - the user's step on the user's data: a message, not a crash
                yield (("pipelines", name, i), f"step '{step.step}' failed on the data: {type(exc).__name__}: "
                                               f"{shorten(str(exc), 300)}")
                break


def _missing_step_columns(where: tuple, params: dict, rows: pd.DataFrame) -> Found:
    named = params.get("columns")
    present = [str(c) for c in rows.columns]
    if named is not None and not isinstance(named, (str, list)):
        yield (where, f"columns must be a column name or a list of them, but got {shorten(repr(named), 80)}")
        return
    for column in [named] if isinstance(named, str) else named or []:
        if not isinstance(column, str):
            yield (where, f"columns must be a column name or a list of them, but got {shorten(repr(column), 80)}")
        elif column not in rows.columns:
            yield (where, f"column '{column}' is not in the data when this step runs{suggest(column, present)} "
                          f"(columns: {shorten(', '.join(present), 300)})")


def check_data(spec: Spec, base_dir: str) -> tuple[list[tuple[tuple, str]], pd.DataFrame | None]:
    """The data reads, has the named columns, and has enough rows for the fold plan."""
    uri = resolve_uri(spec.data.uri, base_dir)
    try:
        raw = read_table(uri, fmt=spec.data.format, read_options=spec.data.read_options)
    except DataError as exc:
        return [(("data", "uri"), str(exc))], None
    missing = missing_columns(raw, spec.data)
    if missing:
        return [(("data", *(int(p) if p.isdigit() else p for p in field.split("."))), message)
                for field, message in missing.items()], None
    stray = stray_text(raw, spec.data, uri=uri)
    if stray:
        return [(("data", "uri"), message) for message in stray], None
    try:
        frame = prepare_frame(raw, spec.data, uri=uri, forecasting=spec.task == "forecasting")
    except DataError as exc:
        return [(("data",), str(exc))], None
    try:
        make_folds(frame, spec)
    except DataError as exc:
        return [(("validation",), str(exc))], frame
    return [], frame


def check_tracking(spec: Spec, base_dir: str, *, attempts: int = 3, timeout_s: float = 3.0) -> Found:
    """A tracking server answers (within seconds, not after every trial) and takes the credentials given.

    Only HTTP stores are asked; a local store is made when first used.
    """
    uri = resolve_tracking_uri(spec.tracking.uri, base_dir)
    if urlsplit(uri).scheme not in ("http", "https"):
        return
    status, reason = _ask_server(uri, attempts=attempts, timeout_s=timeout_s)
    if status is None:
        yield (("tracking", "uri"), f"the tracking server at {redact(uri)} does not answer ({reason}); start it, "
                                    f"or check the URI")
    elif status in (401, 403):
        yield (("tracking", "uri"), f"the tracking server at {redact(uri)} refused the credentials (HTTP {status}); "
                                    "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD")


def _ask_server(uri: str, *, attempts: int, timeout_s: float) -> tuple[int | None, str]:
    """The HTTP status of MLflow's experiment search, or ``None`` and why no answer came."""
    request = urllib.request.Request(f"{uri.rstrip('/')}/api/2.0/mlflow/experiments/search?max_results=1")
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user is not None:
        token = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    reason = "no answer"
    for attempt in range(attempts):
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as reply:
                return reply.status, "ok"
        except urllib.error.HTTPError as exc:
            return exc.code, exc.reason
        except (OSError, ValueError) as exc:  # refused, timed out, unresolvable
            reason = str(getattr(exc, "reason", exc))
        if attempt < attempts - 1:
            time.sleep(1)
    return None, reason


def validate(loaded: LoadedSpec, *, read_data: bool = True, tracking: bool = True) -> pd.DataFrame | None:
    """Run every check; raise once with all problems found.

    Args:
        loaded: The spec.
        read_data: Read the data and check it against the spec and the fold plan.
        tracking: Check that a tracking server answers (off for offline use).

    Returns:
        The loaded data frame when ``read_data`` (so callers need not read it twice).

    Raises:
        SpecError: Listing every problem, each located in the spec.
    """
    spec, base = loaded.spec, loaded.base_dir
    found = [*check_task(spec), *check_metric(spec, base), *check_pipelines(spec),
             *check_references(spec, base), *check_model_forms(spec, base), *check_search(spec, base),
             *check_leakage(spec, base)]
    if tracking:
        found += check_tracking(spec, base)
    frame = None
    if read_data:
        data_found, frame = check_data(spec, base)
        found += data_found
        if frame is not None and not found:
            found += check_pipeline_columns(spec, base, frame)
    if found:
        raise SpecError([loaded.problem(p, m) for p, m in found])
    return frame
