"""The one protocol every model meets, and how a spec's model reference becomes a model.

A model reference names one of:

* an estimator class with the scikit-learn API (``sklearn.ensemble:RandomForestRegressor``):
  built as ``cls(**params)``;
* a built-in adapter class from :mod:`raymlx.models` (same protocol, same construction);
* a Darts forecasting model class (``darts.models:ExponentialSmoothing``): built as
  :class:`raymlx.models.darts.DartsModel` with that class;
* a user's *train function* ``train(X, y, **params)`` that fits and returns any object
  with ``predict(X)`` (and, for classifiers, optionally ``predict_proba(X)``);
* a user's *factory* ``make(**params)`` that returns an unfitted estimator (``fit`` and
  ``predict``), fitted by raymlx on each fold.

A function is told apart by its signature: when its first two positional parameters
have no default it is a train function (they are ``X`` and ``y``); any other function
is a factory.

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
* ``extra``: the raymlx extra that installs them (``forecasting``);
* ``tasks``: the tasks it serves (``("forecasting",)`` for a forecaster of the target alone);
  default: all three.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, ClassVar, Literal, Protocol, runtime_checkable

import numpy as np
import pandas as pd

__all__ = ["Model", "TrainFunctionModel", "build_model", "parameter_names", "is_estimator_class",
           "DeclaresNeeds", "refits_on_history", "requirements_of", "extra_of", "tasks_of", "model_kind",
           "NotAModel", "seed_parameter", "is_darts_class", "MODEL_PACKAGE", "SEED_PARAMETERS", "FORMS"]

MODEL_PACKAGE = "raymlx.models"  # where a spec's short model names (`model: Prophet`) resolve
SEED_PARAMETERS = ("random_state", "seed", "random_seed")  # given the experiment's seed unless the spec sets them
FORMS = ("an estimator class (sklearn.linear_model:Ridge), a train function "
         "(def train(X, y, alpha=1.0): return Ridge(alpha=alpha).fit(X, y)) or a factory "
         "(def make(alpha=1.0): return Ridge(alpha=alpha))")
ModelKind = Literal["estimator", "darts", "train", "factory"]


class NotAModel(TypeError):
    """A model reference that names none of the forms a model can take; the message names them."""


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
    tasks: ClassVar[tuple[str, ...]]


def refits_on_history(model: Any) -> bool:
    """Whether a forecast from a new history refits the model (it keeps its own state of the series)."""
    return bool(getattr(model, "refit_on_history", False))


def requirements_of(model: Any) -> tuple[str, ...]:
    """The pip distributions a model's pickled form needs beyond raymlx's own."""
    return tuple(getattr(model, "requirements", ()))


def extra_of(model: Any) -> str | None:
    """The raymlx extra that installs what a model (instance or class) needs, if any."""
    return getattr(model, "extra", None)


def tasks_of(model: Any) -> tuple[str, ...]:
    """The tasks a model (instance or class) serves: all three unless it says otherwise (a forecaster)."""
    return tuple(getattr(model, "tasks", ("regression", "classification", "forecasting")))


def is_darts_class(obj: Any) -> bool:
    """True for a Darts forecasting model class (checked without importing Darts for other classes)."""
    if not inspect.isclass(obj) or not obj.__module__.startswith("darts."):
        return False
    from darts.models.forecasting.forecasting_model import ForecastingModel

    return issubclass(obj, ForecastingModel)


def _is_train_function(obj: Any) -> bool:
    """A function whose first two positional parameters have no default: ``train(X, y, **params)``."""
    try:
        params = list(inspect.signature(obj).parameters.values())
    except (TypeError, ValueError):  # no signature to read (a builtin): taken for a factory
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)][:2]
    return len(positional) == 2 and all(p.default is p.empty for p in positional)


def model_kind(obj: Any, reference: str = "") -> ModelKind:
    """Which form a resolved model reference takes: estimator class, Darts class, train function or factory.

    Raises:
        NotAModel: When it is none of them; the message names each form with an example.
    """
    name = reference or getattr(obj, "__qualname__", type(obj).__name__)
    if inspect.isclass(obj):
        if is_darts_class(obj):
            return "darts"
        if is_estimator_class(obj):
            return "estimator"
        raise NotAModel(f"'{name}' is a class without fit and predict; a model is {FORMS}")
    if callable(obj):
        return "train" if _is_train_function(obj) else "factory"
    if callable(getattr(obj, "fit", None)):
        raise NotAModel(f"'{name}' is an estimator object, not a class or a function; name its class (module:Class) "
                        "with its parameters under params, or write a factory (def make(alpha=1.0): return Ridge(alpha=alpha))")
    raise NotAModel(f"'{name}' is not a model (its type is {type(obj).__name__}); a model is {FORMS}")


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
    """Build an unfitted model from a resolved reference and its parameters.

    Raises:
        NotAModel: When the reference names no model form, or a factory returned no estimator.
    """
    kind = model_kind(obj)
    if kind == "estimator":
        return obj(**params)
    if kind == "darts":
        from raymlx.models.darts import DartsModel

        return DartsModel(obj, **params)
    if kind == "train":
        return TrainFunctionModel(obj, **params)
    made = obj(**params)
    if not (callable(getattr(made, "fit", None)) and callable(getattr(made, "predict", None))):
        name = getattr(obj, "__name__", repr(obj))
        raise NotAModel(f"factory '{name}' must return an unfitted estimator with fit and predict, "
                        f"got {type(made).__name__}; a model is {FORMS}")
    return made


def parameter_names(obj: Any) -> set[str] | None:
    """Names a model reference accepts as parameters, or ``None`` when it takes any (``**kwargs``)."""
    target = obj.__init__ if inspect.isclass(obj) else obj
    signature = inspect.signature(target)
    train = not inspect.isclass(obj) and _is_train_function(obj)
    names = set()
    for index, param in enumerate(signature.parameters.values()):
        if param.kind is param.VAR_KEYWORD:
            return None
        if param.name == "self" or param.kind is param.VAR_POSITIONAL:
            continue
        if train and index < 2:
            continue  # a train function's X and y
        names.add(param.name)
    return names


def seed_parameter(obj: Any) -> str | None:
    """The parameter a model reference names for its random seed (``random_state``, ``seed``, ...), if any.

    Only a parameter its signature names counts (not one ``**kwargs`` might take).
    """
    try:
        named = inspect.signature(obj.__init__ if inspect.isclass(obj) else obj).parameters
    except (TypeError, ValueError):
        return None
    return next((name for name in SEED_PARAMETERS if name in named), None)
