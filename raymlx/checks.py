"""Rules across spec sections and against the code and data the spec names, checked before Ray starts.

Each ``check_*`` returns ``(field path, message)`` pairs; :func:`validate` runs them
all and raises one :class:`~raymlx.errors.SpecError` listing every problem.
"""

from __future__ import annotations

from typing import Iterator

import pandas as pd

from raymlx.data import missing_columns, prepare_frame, read_table, resolve_uri
from raymlx.errors import DataError, SpecError
from raymlx.folds import make_folds
from raymlx.metrics import BUILTIN_METRICS
from raymlx.models.base import MODEL_PACKAGE, NotAModel, parameter_names
from raymlx.models.families import learns_from_rows, task_problem
from raymlx.pipeline import STEP_PACKAGE, expand_steps, make_step
from raymlx.registry import UnresolvedReference, resolve, suggest
from raymlx.space import continuous_params, grid_size
from raymlx.spec import Spec
from raymlx.spec_io import LoadedSpec

__all__ = ["validate", "check_task", "check_pipelines", "check_references", "check_model_forms", "check_search",
           "check_metric", "check_leakage", "check_data"]

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
    """Every model and step reference imports."""
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
                resolve(step.step, base_dir=base_dir, default_package=STEP_PACKAGE)
            except UnresolvedReference as exc:
                yield (("pipelines", name, i, "step"), str(exc))


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
    try:
        frame = prepare_frame(raw, spec.data, uri=uri, forecasting=spec.task == "forecasting")
    except DataError as exc:
        return [(("data",), str(exc))], None
    try:
        make_folds(frame, spec)
    except DataError as exc:
        return [(("validation",), str(exc))], frame
    return [], frame


def validate(loaded: LoadedSpec, *, read_data: bool = True) -> pd.DataFrame | None:
    """Run every check; raise once with all problems found.

    Returns:
        The loaded data frame when ``read_data`` (so callers need not read it twice).

    Raises:
        SpecError: Listing every problem, each located in the spec.
    """
    spec, base = loaded.spec, loaded.base_dir
    found = [*check_task(spec), *check_metric(spec, base), *check_pipelines(spec),
             *check_references(spec, base), *check_model_forms(spec, base), *check_search(spec, base),
             *check_leakage(spec, base)]
    frame = None
    if read_data:
        data_found, frame = check_data(spec, base)
        found += data_found
    if found:
        raise SpecError([loaded.problem(p, m) for p, m in found])
    return frame
