"""Prophet (additive trend + seasonality + regressors) as a raymlx model."""

from __future__ import annotations

import contextlib
import logging
from typing import ClassVar, Iterator, Literal

import numpy as np
import pandas as pd

from raymlx._imports import import_optional

__all__ = ["Prophet"]

# Prophet and its Stan backend log every fit at INFO ("Chain [1] start processing"),
# and prophet.plot logs an error at import when plotly is missing; with hundreds of
# trials that drowns the user's progress display.
_NOISY_LOGGERS = ("cmdstanpy", "prophet", "prophet.plot")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence Prophet's loggers for the duration of a call.

    Disabling, not raising the level: cmdstanpy sets its logger's level itself the
    first time it logs.
    """
    loggers = [logging.getLogger(name) for name in _NOISY_LOGGERS]
    states = [logger.disabled for logger in loggers]
    for logger in loggers:
        logger.disabled = True
    try:
        yield
    finally:
        for logger, state in zip(loggers, states):
            logger.disabled = state


class Prophet:
    """Prophet, fitted on the target's time stamps and values, with optional extra regressors.

    Args:
        changepoint_prior_scale: Flexibility of the trend (higher: more changepoints used).
        seasonality_prior_scale: Strength of the seasonalities.
        seasonality_mode: ``additive`` or ``multiplicative``.
        yearly_seasonality: ``auto``, ``True``/``False``, or the number of Fourier terms.
        weekly_seasonality: ``auto``, ``True``/``False``, or the number of Fourier terms.
        regressors: Columns of ``X`` added as extra regressors. For forecasting they must
            be known for the window predicted, e.g. lags at least the horizon long or
            calendar features.
    """

    refit_on_history: ClassVar[bool] = True  # it keeps its own state of the series: a new history means a new fit
    tasks: ClassVar[tuple[str, ...]] = ("forecasting",)  # it forecasts the target from its own past
    requirements: ClassVar[tuple[str, ...]] = ("prophet",)  # pip requirements of its MLflow model
    extra: ClassVar[str | None] = "forecasting"  # the raymlx extra that installs them

    def __init__(self, changepoint_prior_scale: float = 0.05, seasonality_prior_scale: float = 10.0,
                 seasonality_mode: Literal["additive", "multiplicative"] = "additive",
                 yearly_seasonality: bool | int | Literal["auto"] = "auto",
                 weekly_seasonality: bool | int | Literal["auto"] = "auto",
                 regressors: list[str] | None = None) -> None:
        self.changepoint_prior_scale = changepoint_prior_scale
        self.seasonality_prior_scale = seasonality_prior_scale
        self.seasonality_mode = seasonality_mode
        self.yearly_seasonality = yearly_seasonality
        self.weekly_seasonality = weekly_seasonality
        self.regressors = [regressors] if isinstance(regressors, str) else list(regressors or [])

    def _frame(self, X: pd.DataFrame) -> pd.DataFrame:
        """Prophet's input: a ``ds`` column of naive time stamps, then the regressors."""
        if not isinstance(X.index, pd.DatetimeIndex):
            raise TypeError(f"Prophet needs rows indexed by time (set data.time_column), "
                            f"but got a {type(X.index).__name__}")
        missing = [c for c in self.regressors if c not in X.columns]
        if missing:
            raise KeyError(f"Prophet regressors {missing} are not among the feature columns {list(X.columns)}")
        ds = X.index.tz_localize(None) if X.index.tz is not None else X.index
        frame = pd.DataFrame({"ds": ds})
        for column in self.regressors:
            frame[column] = X[column].to_numpy(dtype=float)
        return frame

    def fit(self, X: pd.DataFrame, y: pd.Series) -> Prophet:
        with _quiet():
            prophet = import_optional("prophet", extra="forecasting", needed_for="the Prophet model")
            model = prophet.Prophet(
                changepoint_prior_scale=self.changepoint_prior_scale,
                seasonality_prior_scale=self.seasonality_prior_scale,
                seasonality_mode=self.seasonality_mode,
                yearly_seasonality=self.yearly_seasonality,
                weekly_seasonality=self.weekly_seasonality,
                uncertainty_samples=0,  # raymlx scores point forecasts; sampling intervals would triple predict time
            )
            for column in self.regressors:
                model.add_regressor(column)
            frame = self._frame(X).assign(y=y.to_numpy(dtype=float))
            self.model_ = model.fit(frame)
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        frame = self._frame(X)
        order = np.argsort(frame["ds"].to_numpy(), kind="stable")  # Prophet answers in time order
        with _quiet():
            forecast = self.model_.predict(frame.iloc[order].reset_index(drop=True))
        predictions = np.empty(len(frame))
        predictions[order] = forecast["yhat"].to_numpy()
        return predictions
