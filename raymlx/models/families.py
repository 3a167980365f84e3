"""Whether a model reference can serve the spec's task: checked by ``raymlx validate`` before any trial runs.

A classifier cannot serve a regression, a regressor cannot serve a classification,
a forecaster of the target alone (Darts, Prophet, the seasonal naive) cannot serve a
tabular task, and a class whose ``fit`` cannot take ``fit(X, y)`` serves none. Each
answer says what to write instead.
"""

from __future__ import annotations

import inspect
from typing import Any

from raymlx.models.base import FORMS, model_kind, tasks_of

__all__ = ["task_problem", "learns_from_rows"]

# Darts model families one spec entry cannot express, by a class in their MRO, and why.
_DARTS_UNSUPPORTED = {
    "EnsembleModel": "combines other model objects, which a spec cannot name; list each model as its own entry",
    "ConformalModel": "wraps another model object, which a spec cannot name; list that model as its own entry",
    "VARIMA": "forecasts several series together, but raymlx forecasts one target; try darts.models:ARIMA",
    "MultivariateModel": "forecasts several series together, but raymlx forecasts one target",
    "_ClassifierMixin": "predicts classes of a series, but forecasting scores values; try darts.models:SKLearnModel",
}


def _family(estimator: Any) -> str | None:
    """``classifier`` or ``regressor`` for a scikit-learn estimator instance, else ``None``."""
    from sklearn.base import is_classifier, is_regressor

    try:
        return "classifier" if is_classifier(estimator) else "regressor" if is_regressor(estimator) else None
    except Exception:  # not a scikit-learn estimator: nothing known
        return None


def _instance(obj: Any, kind: str, params: dict[str, Any]) -> Any:
    """An unfitted instance to ask for its family, or ``None`` when it cannot be made without the searched values."""
    try:
        inspect.signature(obj).bind(**params)
        return obj(**params)
    except Exception:  # required parameters come from the search, or the constructor checks values
        return None


def _swap(reference: str, family: str) -> str:
    """``sklearn.ensemble:RandomForestRegressor`` for a ``...Classifier`` in a regression (if it exists)."""
    wrong, right = ("Classifier", "Regressor") if family == "classifier" else ("Regressor", "Classifier")
    if wrong not in reference:
        return ""
    other = reference.replace(wrong, right)
    module, _, attr = other.partition(":")
    try:
        import importlib

        getattr(importlib.import_module(module), attr)
    except Exception:
        return ""
    return f" such as {other}"


def _darts_problem(obj: type, reference: str, task: str) -> str | None:
    if task != "forecasting":
        return (f"'{reference}' is a Darts forecasting model: it fits a series, not rows, so it serves task: "
                f"forecasting only; for {task} name a scikit-learn estimator (module:Class) or {FORMS.partition(', ')[2]}")
    if inspect.isabstract(obj):
        return f"'{reference}' is an abstract Darts base class; name one of its models (darts.models:ExponentialSmoothing)"
    for base in obj.__mro__:
        if base.__name__ in _DARTS_UNSUPPORTED:
            return f"'{reference}' {_DARTS_UNSUPPORTED[base.__name__]}"
    return None


def _fit_problem(obj: type, reference: str) -> str | None:
    fit = getattr(obj, "fit")
    try:
        inspect.signature(fit).bind(object(), "X", "y")
    except TypeError:
        return (f"'{reference}' has fit{inspect.signature(fit)}, but raymlx calls fit(X, y) on each fold; "
                f"wrap it in a train function (def train(X, y, **params): ...) that returns an object with predict(X)")
    except ValueError:  # no signature to read
        pass
    return None


def learns_from_rows(obj: Any, params: dict[str, Any]) -> bool:
    """Whether a reference makes a scikit-learn regressor or classifier: it needs feature columns to learn from."""
    try:
        kind = model_kind(obj)
    except TypeError:
        return False
    return kind in ("estimator", "factory") and _family(_instance(obj, kind, params)) is not None


def task_problem(obj: Any, reference: str, task: str, params: dict[str, Any]) -> str | None:
    """Why a resolved model reference cannot serve ``task``, or ``None`` when it can (or cannot be told).

    Args:
        obj: The resolved reference.
        reference: The reference as the spec wrote it (for the message).
        task: ``regression``, ``classification`` or ``forecasting``.
        params: The spec's fixed parameters of the model (to build an instance and ask its family).
    """
    kind = model_kind(obj, reference)
    if kind == "darts":
        return _darts_problem(obj, reference, task)
    if task not in tasks_of(obj):
        return (f"'{reference}' forecasts the target from its own past and serves task: {', '.join(tasks_of(obj))} "
                f"only; for {task} name a scikit-learn estimator (module:Class) or {FORMS.partition(', ')[2]}")
    if kind == "estimator":
        problem = _fit_problem(obj, reference)
        if problem:
            return problem
    if kind == "train":
        return None  # what it returns is known only once it ran
    family = _family(_instance(obj, kind, params))
    wanted = "classifier" if task == "classification" else "regressor"
    if family is not None and family != wanted:
        what = "a factory of a " + family if kind == "factory" else "a " + family
        return f"'{reference}' is {what}, but the task is {task}; use a {wanted}{_swap(reference, family)}"
    return None
