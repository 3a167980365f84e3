"""Darts forecasting models as raymlx models: any of them by reference, and short forms of a few."""

from __future__ import annotations

import enum
import inspect
import warnings
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd

from raymlx._imports import import_optional
from raymlx.models._series import SeriesEnd, regular_series
from raymlx.registry import resolve

__all__ = ["DartsModel", "ExponentialSmoothing", "Theta", "LinearRegressionModel"]

Mode = Literal["additive", "multiplicative", "none"]


def _coerce_enums(cls: type, params: dict[str, Any]) -> dict[str, Any]:
    """Turn spec strings (``trend: additive``) and ``null`` into the Enum members Darts expects.

    A parameter is converted when the Darts class's default for it is an Enum member,
    so the rule follows Darts' own signatures instead of a list kept here.
    """
    defaults = inspect.signature(getattr(cls, "__init__")).parameters  # Darts wraps the class call in a metaclass
    coerced = dict(params)
    for name, value in params.items():
        default = defaults[name].default if name in defaults else None
        if isinstance(default, enum.Enum) and not isinstance(value, enum.Enum):
            members = type(default).__members__
            key = "NONE" if value is None else str(value).upper()
            if key not in members:
                choices = ", ".join(m.lower() for m in members)
                raise ValueError(f"{cls.__name__} parameter '{name}' must be one of {choices}, but got {value!r}")
            coerced[name] = members[key]
    return coerced


class DartsModel:
    """Any Darts forecasting model, fitted on the target series and asked for the rows of ``X``.

    The model sees only the target (its time stamps and values); the columns of ``X``
    are not used. ``predict(X)`` forecasts up to the last time stamp of ``X`` and
    returns the steps ``X`` asks for.

    Args:
        model: The Darts model class: a name in ``darts.models`` (``ExponentialSmoothing``)
            or a reference (``darts.models:ExponentialSmoothing``, ``my_module:MyModel``).
        **params: Passed to the model class; strings become Darts' Enum members where
            the class expects one (``trend: additive``).
    """

    refit_on_history: ClassVar[bool] = True  # it keeps its own state of the series: a new history means a new fit
    tasks: ClassVar[tuple[str, ...]] = ("forecasting",)  # it forecasts the target from its own past
    requirements: ClassVar[tuple[str, ...]] = ("darts",)  # pip requirements of its MLflow model
    extra: ClassVar[str | None] = "forecasting"  # the raymlx extra that installs them

    def __init__(self, model: str | type, **params: Any) -> None:
        self.model = model
        self.params = params

    def _model_class(self) -> type:
        if not isinstance(self.model, str):
            return self.model
        return resolve(self.model if ":" in self.model else f"darts.models:{self.model}")

    def fit(self, X: pd.DataFrame, y: pd.Series) -> DartsModel:
        darts = import_optional("darts", extra="forecasting", needed_for="the Darts models")
        cls = self._model_class()
        series = regular_series(y)
        self.end_ = SeriesEnd(series)
        self.model_ = cls(**_coerce_enums(cls, self.params))
        if getattr(series.index, "tz", None) is not None:
            series = series.tz_convert(None)  # to UTC: Darts drops time zones with a warning; self.end_ counts steps
        with warnings.catch_warnings():
            # Deprecation notices Darts triggers inside statsmodels: nothing a user can act on.
            warnings.simplefilter("ignore", FutureWarning)
            self.model_.fit(darts.TimeSeries.from_series(series))
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        steps = self.end_.steps(X.index)
        if len(steps) == 0:
            return np.zeros(0)
        forecast = self.model_.predict(int(steps.max()))
        return forecast.values(copy=False)[:, 0][steps - 1].astype(float)


class ExponentialSmoothing(DartsModel):
    """Holt-Winters exponential smoothing (Darts ``ExponentialSmoothing``, statsmodels underneath).

    Args:
        trend: ``additive``, ``multiplicative`` or ``none``.
        damped: Damp the trend towards flat.
        seasonal: ``additive``, ``multiplicative`` or ``none``.
        seasonal_periods: Rows in a season; ``None`` infers it from the frequency (7 for daily).
    """

    def __init__(self, trend: Mode | None = "additive", damped: bool = False, seasonal: Mode | None = "additive",
                 seasonal_periods: int | None = None) -> None:
        super().__init__("ExponentialSmoothing", trend=trend, damped=damped, seasonal=seasonal,
                         seasonal_periods=seasonal_periods)


class Theta(DartsModel):
    """The Theta method (Darts ``Theta``): a damped trend line plus simple exponential smoothing.

    Args:
        theta: The theta coefficient (not 0).
        seasonality_period: Rows in a season; ``None`` detects it.
        season_mode: ``additive``, ``multiplicative`` (strictly positive series only) or ``none``.
            Additive by default, unlike Darts, so that series with zeros or negative values
            (temperatures) work out of the box.
    """

    def __init__(self, theta: float = 2.0, seasonality_period: int | None = None,
                 season_mode: Mode | None = "additive") -> None:
        super().__init__("Theta", theta=theta, seasonality_period=seasonality_period, season_mode=season_mode)


class LinearRegressionModel(DartsModel):
    """A linear regression on the target's own last values (Darts ``LinearRegressionModel``),
    rolled forward step by step when asked for more than ``output_chunk_length`` steps.

    Args:
        lags: Past values used as inputs.
        output_chunk_length: Steps predicted at once.
    """

    def __init__(self, lags: int = 14, output_chunk_length: int = 1) -> None:
        super().__init__("LinearRegressionModel", lags=lags, output_chunk_length=output_chunk_length)
