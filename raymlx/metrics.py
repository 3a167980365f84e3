"""Metrics: the built-ins and a user's ``module:function``, all scored the same way on every fold."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Literal

import numpy as np
from sklearn import metrics as skm

from raymlx.registry import resolve

__all__ = ["Metric", "BUILTIN_METRICS", "get_metric", "score", "predict_for", "score_predictions"]


@dataclass(frozen=True)
class Metric:
    """A scoring function and whether lower or higher is better.

    ``needs_proba`` metrics are given class probabilities instead of labels;
    ``takes_labels`` metrics are also told every class the model knows;
    ``tasks`` are the tasks the metric fits (a metric of your own is taken to fit any).
    """

    name: str
    function: Callable[..., float]
    mode: Literal["min", "max"]
    needs_proba: bool = False
    takes_labels: bool = False
    tasks: tuple[str, ...] = ("regression", "classification", "forecasting")


def _rmse(y_true, y_pred) -> float:
    return float(np.sqrt(skm.mean_squared_error(y_true, y_pred)))


def _f1(y_true, y_pred, labels=None) -> float:
    """Binary F1 for 0/1 labels, macro F1 otherwise, decided by every class the model knows (not one fold's)."""
    classes = np.union1d(y_true, y_pred) if labels is None else np.asarray(labels)
    if len(classes) <= 2 and set(classes.tolist()) <= {0, 1}:
        return float(skm.f1_score(y_true, y_pred, average="binary"))
    return float(skm.f1_score(y_true, y_pred, average="macro", labels=classes))


def _roc_auc(y_true, proba, labels=None) -> float:
    if proba.ndim == 2 and proba.shape[1] == 2:
        return float(skm.roc_auc_score(y_true, proba[:, 1]))
    return float(skm.roc_auc_score(y_true, proba, multi_class="ovr", labels=labels))


def _log_loss(y_true, proba, labels=None) -> float:
    return float(skm.log_loss(y_true, proba, labels=labels))


_NUMERIC = ("regression", "forecasting")
_CLASSES = ("classification",)

# Adding a built-in metric is one line here (and its test in tests/test_metrics.py).
BUILTIN_METRICS: dict[str, Metric] = {
    "rmse": Metric("rmse", _rmse, "min", tasks=_NUMERIC),
    "mae": Metric("mae", skm.mean_absolute_error, "min", tasks=_NUMERIC),
    "mape": Metric("mape", skm.mean_absolute_percentage_error, "min", tasks=_NUMERIC),
    "r2": Metric("r2", skm.r2_score, "max", tasks=_NUMERIC),
    "accuracy": Metric("accuracy", skm.accuracy_score, "max", tasks=_CLASSES),
    "f1": Metric("f1", _f1, "max", takes_labels=True, tasks=_CLASSES),
    "log_loss": Metric("log_loss", _log_loss, "min", needs_proba=True, takes_labels=True, tasks=_CLASSES),
    "roc_auc": Metric("roc_auc", _roc_auc, "max", needs_proba=True, takes_labels=True, tasks=_CLASSES),
}


def get_metric(name: str, mode: Literal["min", "max"] | None = None, *, base_dir: str = ".") -> Metric:
    """The built-in metric of that name, or a user's ``module:function`` (which needs ``mode``)."""
    if name in BUILTIN_METRICS:
        builtin = BUILTIN_METRICS[name]
        return replace(builtin, mode=mode or builtin.mode)
    function = resolve(name, base_dir=base_dir)
    if mode is None:
        raise ValueError(f"metric '{name}' needs a mode (min or max)")
    return Metric(name.rpartition(":")[2], function, mode)


def predict_for(metric: Metric, model: Any, X) -> np.ndarray:
    """What the metric scores: class probabilities for ``needs_proba`` metrics, else predictions."""
    return np.asarray(model.predict_proba(X) if metric.needs_proba else model.predict(X))


def score_predictions(metric: Metric, predicted: np.ndarray, y, *, labels=None) -> float:
    """Score what :func:`predict_for` returned against true values ``y``; ``labels``: the model's classes."""
    if metric.takes_labels:
        return float(metric.function(np.asarray(y), predicted, labels=labels))
    return float(metric.function(np.asarray(y), predicted))


def score(metric: Metric, model: Any, X, y) -> float:
    """Score a fitted model on rows ``X`` with true values ``y``."""
    return score_predictions(metric, predict_for(metric, model, X), y, labels=getattr(model, "classes_", None))
