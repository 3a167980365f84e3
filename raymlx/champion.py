"""The champion as an MLflow pyfunc model: its fitted pipeline and model, applied to raw rows."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import mlflow.pyfunc

from raymlx.pipeline import Pipeline

__all__ = ["FittedPredictor", "ChampionModel", "fit_predictor"]


@dataclass
class FittedPredictor:
    """A pipeline and model fitted together, with what is needed to apply them to new rows.

    For forecasting, ``history`` is the frame the predictor was fitted on: a
    forecast appends the requested timestamps to it (with unknown values) and
    builds their features from the past, as each fold did at its cutoff.
    """

    pipeline: Pipeline
    model: Any
    target: str
    input_columns: list[str]
    time_column: str | None = None
    history: pd.DataFrame | None = None
    pipeline_unfitted: Pipeline | None = None

    def features(self, rows: pd.DataFrame) -> pd.DataFrame:
        """Features of raw input rows (for forecasting: rows holding the times to forecast)."""
        if self.history is None:
            return self.pipeline.transform(rows[self.input_columns]).drop(columns=[self.target], errors="ignore")
        return self._future_features(self.history, pd.DatetimeIndex(pd.to_datetime(rows[self.time_column])))

    def _future_features(self, history: pd.DataFrame, times: pd.DatetimeIndex) -> pd.DataFrame:
        times = times.rename(history.index.name)
        future = pd.DataFrame(np.nan, index=times, columns=history.columns)
        frame = self.pipeline.transform(pd.concat([history, future]))
        return frame.loc[times].drop(columns=[self.target], errors="ignore")

    def predict(self, rows: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.model.predict(self.features(rows)))

    @property
    def frequency(self) -> pd.DateOffset:
        """Spacing of the history's times (daily for the temperature example)."""
        return pd.tseries.frequencies.to_offset(pd.infer_freq(self.history.index[-10:]) or
                                                (self.history.index[-1] - self.history.index[-2]))

    def forecast(self, horizon: int, *, history: pd.DataFrame | None = None) -> pd.Series:
        """Forecast ``horizon`` steps after the end of the training data, or of a history the caller gives.

        With a history (indexed by time, with the target and the data's columns),
        a model that keeps its own state of the series (``refit_on_history = True``:
        statistical models such as Prophet or exponential smoothing) is refit on
        it with the champion's parameters; a model on pipeline features keeps its
        fit and builds the features from the given history.

        Returns:
            Forecasts indexed by their times.
        """
        if self.history is None:
            raise TypeError("this champion was not trained for forecasting")
        history = self.history if history is None else history.sort_index()
        times = pd.date_range(history.index[-1], periods=horizon + 1, freq=self.frequency)[1:]
        predictor = self
        if history is not self.history and getattr(self.model, "refit_on_history", False):
            predictor = fit_predictor(history, self.pipeline_unfitted or self.pipeline, copy.deepcopy(self.model),
                                      target=self.target, input_columns=self.input_columns,
                                      forecasting=True, time_column=self.time_column)
        values = predictor.model.predict(predictor._future_features(history, times))
        return pd.Series(np.asarray(values, dtype=float), index=times, name=self.target)


def fit_predictor(frame: pd.DataFrame, pipeline: Pipeline, model: Any, *, target: str,
                  input_columns: list[str], forecasting: bool, time_column: str | None) -> FittedPredictor:
    """Fit the pipeline and model on every row (the champion's refit)."""
    fitted = pipeline.fit(frame)
    features = fitted.transform(frame).drop(columns=[target], errors="ignore")
    model.fit(features, frame[target].loc[features.index])
    if not forecasting:
        return FittedPredictor(fitted, model, target, input_columns)
    return FittedPredictor(fitted, model, target, input_columns, time_column, frame, pipeline)


class ChampionModel(mlflow.pyfunc.PythonModel):
    """MLflow pyfunc wrapper: ``predict`` takes raw input rows (for forecasting: the times to forecast)."""

    def __init__(self, predictor: FittedPredictor, metadata: dict[str, Any]) -> None:
        self.predictor = predictor
        self.metadata = metadata

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> np.ndarray:
        return self.predictor.predict(model_input)

    def forecast(self, horizon: int, *, history: pd.DataFrame | None = None) -> pd.Series:
        """See :meth:`FittedPredictor.forecast`; reach it with ``load_model(uri).unwrap_python_model()``."""
        return self.predictor.forecast(horizon, history=history)
