"""The one protocol every model meets, and how a spec's model reference becomes a model.

A model reference names one of:

* an estimator class with the scikit-learn API (``sklearn.ensemble:RandomForestRegressor``):
  built as ``cls(**params)``;
* a built-in adapter class from :mod:`raymlx.models` (same protocol, same construction);
* a user's *train function* ``train(X, y, **params)`` that fits and returns any object
  with ``predict(X)`` (and, for classifiers, optionally ``predict_proba(X)``).

raymlx does the validation itself: every model is fitted on each fold's training
part and scored on its validation part with the experiment's metric, so all
three kinds are compared on equal terms.

For forecasting, ``X`` carries a sorted ``DatetimeIndex``; ``predict(X)`` gets the
rows of the window to forecast (their timestamps and the features known at the
cutoff) and returns one value per row.

A model class may declare, as class attributes (see :class:`Model`):

* ``refit_on_history``: it keeps its own state of the series, so a forecast from a
  new history refits it (statistical forecasters); default ``False``;
* ``requirements``: pip distributions its pickled form needs (``("prophet",)``),
  pinned in the champion's MLflow model;
* ``extra``: the raymlx extra that installs them (``forecasting``).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, ClassVar, Protocol, runtime_checkable

import numpy as np
import pandas as pd

__all__ = ["Model", "TrainFunctionModel", "build_model", "parameter_names", "is_estimator_class",
           "DeclaresNeeds", "refits_on_history", "requirements_of", "extra_of", "MODEL_PACKAGE"]

MODEL_PACKAGE = "raymlx.models"  # where a spec's short model names (`model: Prophet`) resolve


@runtime_checkable
class Model(Protocol):
    """What raymlx needs of a model: fit on a fold, predict its window."""

    def fit(self, X: pd.DataFrame, y: pd.Series) -> Any: ...

    def predict(self, X: pd.DataFrame) -> np.ndarray: ...


class DeclaresNeeds(Protocol):
    """The optional class attributes a model adapter declares (read with the functions below)."""

    refit_on_history: ClassVar[bool]
    requirements: ClassVar[tuple[str, ...]]
    extra: ClassVar[str | None]


def refits_on_history(model: Any) -> bool:
    """Whether a forecast from a new history refits the model (it keeps its own state of the series)."""
    return bool(getattr(model, "refit_on_history", False))


def requirements_of(model: Any) -> tuple[str, ...]:
    """The pip distributions a model's pickled form needs beyond raymlx's own."""
    return tuple(getattr(model, "requirements", ()))


def extra_of(model: Any) -> str | None:
    """The raymlx extra that installs what a model (instance or class) needs, if any."""
    return getattr(model, "extra", None)


def is_estimator_class(obj: Any) -> bool:
    """True for a class whose instances fit and predict."""
    return inspect.isclass(obj) and callable(getattr(obj, "fit", None)) and callable(getattr(obj, "predict", None))


class TrainFunctionModel:
    """Adapts a user's ``train(X, y, **params) -> fitted`` function to the model protocol."""

    def __init__(self, train: Callable[..., Any], **params: Any) -> None:
        self.train = train
        self.params = params
        self.fitted_: Any = None

    def fit(self, X: pd.DataFrame, y: pd.Series) -> TrainFunctionModel:
        fitted = self.train(X, y, **self.params)
        if not callable(getattr(fitted, "predict", None)):
            name = getattr(self.train, "__qualname__", repr(self.train))
            raise TypeError(f"train function '{name}' must return an object with predict(X), got {type(fitted).__name__}")
        self.fitted_ = fitted
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.fitted_.predict(X))

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.fitted_.predict_proba(X))

    @property
    def classes_(self) -> np.ndarray:
        return self.fitted_.classes_


def build_model(obj: Any, params: dict[str, Any]) -> Model:
    """Build an unfitted model from a resolved reference and its parameters."""
    if is_estimator_class(obj):
        return obj(**params)
    if callable(obj):
        return TrainFunctionModel(obj, **params)
    raise TypeError(f"expected an estimator class or a train function, got {type(obj).__name__}")


def parameter_names(obj: Any) -> set[str] | None:
    """Names a model reference accepts as parameters, or ``None`` when it takes any (``**kwargs``)."""
    target = obj.__init__ if inspect.isclass(obj) else obj
    signature = inspect.signature(target)
    names = set()
    for index, param in enumerate(signature.parameters.values()):
        if param.kind is param.VAR_KEYWORD:
            return None
        if param.name == "self" or param.kind is param.VAR_POSITIONAL:
            continue
        if not inspect.isclass(obj) and index < 2 and param.kind is not param.KEYWORD_ONLY:
            continue  # a train function's X and y
        names.add(param.name)
    return names
