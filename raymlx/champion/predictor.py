"""The champion as an MLflow pyfunc model: its fitted pipeline and model, applied to raw rows.

:class:`ServedPredictor` is the contract between training and serving: what
``raymlx serve`` (and anyone loading the model) may rely on.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from raymlx.models.base import refits_on_history
from raymlx.pipeline import Pipeline, complete_rows, known_columns

__all__ = ["ServedPredictor", "FittedPredictor", "ChampionModel", "fit_predictor"]


@runtime_checkable
class ServedPredictor(Protocol):
    """What serving relies on in a champion's fitted predictor (:class:`FittedPredictor` is the one raymlx makes).

    ``history`` is ``None`` for a tabular champion; a forecasting champion has it, with
    ``time_column``, ``max_horizon`` and the ``future_columns`` a forecast needs.
    """

    model: Any
    target: str
    input_columns: list[str]
    time_column: str | None
    history: pd.DataFrame | None
    max_horizon: int | None
    future_columns: list[str]

    def features(self, rows: pd.DataFrame) -> pd.DataFrame: ...

    def predict(self, rows: pd.DataFrame) -> np.ndarray: ...

    def forecast(self, horizon: int, *, history: pd.DataFrame | None = None,
                 future: pd.DataFrame | None = None) -> pd.Series: ...


@dataclass
class FittedPredictor:
    """A pipeline and model fitted together, with what is needed to apply them to new rows.

    For forecasting, ``history`` is the frame the predictor was fitted on: a
    forecast appends the requested timestamps to it (with unknown values) and
    builds their features from the past, as each fold did at its cutoff. The
    ``future_columns`` are known over the forecast window: a forecast takes their
    values for the forecast times from the caller.
    """

    pipeline: Pipeline
    model: Any
    target: str
    input_columns: list[str]
    time_column: str | None = None
    history: pd.DataFrame | None = None
    pipeline_unfitted: Pipeline | None = None
    feature_columns: list[str] | None = None
    max_horizon: int | None = None
    future_columns: list[str] = field(default_factory=list)

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update({"future_columns": [], **state})  # champions pickled before future columns

    def features(self, rows: pd.DataFrame) -> pd.DataFrame:
        """Features of raw input rows (for forecasting: rows holding the times to forecast and the future columns).

        Raises:
            ValueError: When the pipeline dropped input rows, or rows to forecast lack a future column.
        """
        if self.history is not None:
            times = pd.DatetimeIndex(pd.to_datetime(rows[self.time_column]))
            return self._future_features(self.history, times, rows if self.future_columns else None)
        # Fresh labels: steps that remember their training rows by label must not mistake these for them.
        inputs = rows if list(rows.columns) == self.input_columns else rows[self.input_columns]
        features = self.pipeline.transform(inputs.set_axis(pd.RangeIndex(-len(rows), 0)))
        if self.target in features.columns:
            features = features.drop(columns=[self.target])
        if len(features) != len(rows):
            raise ValueError(f"the pipeline dropped {len(rows) - len(features)} of {len(rows)} input rows")
        return features.set_axis(rows.index)

    def _future_features(self, history: pd.DataFrame, times: pd.DatetimeIndex,
                         known: pd.DataFrame | None = None) -> pd.DataFrame:
        times = times.rename(history.index.name)
        future = pd.DataFrame(np.nan, index=times, columns=history.columns)
        if self.future_columns:
            values = self._future_values(known, times)
            for column in self.future_columns:
                future[column] = values[column].to_numpy()
        frame = self.pipeline.transform(pd.concat([history, future]))
        if not times.isin(frame.index).all():
            raise ValueError("the pipeline dropped rows to forecast; steps may drop training rows only")
        return frame.loc[times, self.feature_columns]

    def _future_values(self, future: pd.DataFrame | None, times: pd.DatetimeIndex) -> pd.DataFrame:
        """The future columns at ``times``, from a frame indexed by time or holding the time column."""
        needed = f"{', '.join(self.future_columns)} for {times[0]} to {times[-1]}"
        if future is None:
            raise ValueError(f"this champion needs the future values of {needed}: pass them as future=")
        if self.time_column in future.columns:
            future = future.set_index(self.time_column)
        missing = [c for c in self.future_columns if c not in future.columns]
        if missing:
            raise ValueError(f"future lacks the column(s) {', '.join(missing)}; it needs {needed}")
        index = pd.DatetimeIndex(pd.to_datetime(future.index))
        if index.has_duplicates:
            raise ValueError(f"future has the time {index[index.duplicated()][0]} twice")
        absent = times[~times.isin(index)]
        if len(absent):
            raise ValueError(f"future lacks the time(s) {', '.join(str(t) for t in absent[:5])}"
                             f"{' ...' if len(absent) > 5 else ''}; it needs {needed}")
        return future.set_axis(index)[self.future_columns].loc[times]

    def predict(self, rows: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.model.predict(self.features(rows)))

    @property
    def frequency(self) -> pd.DateOffset:
        """Spacing of the history's times (daily for the temperature example)."""
        index = self._history().index
        return pd.tseries.frequencies.to_offset(pd.infer_freq(index[-10:]) or (index[-1] - index[-2]))

    def _history(self) -> pd.DataFrame:
        if self.history is None:
            raise TypeError("this champion was not trained for forecasting")
        return self.history

    def times_after(self, history: pd.DataFrame, horizon: int) -> pd.DatetimeIndex:
        """The ``horizon`` times that follow a history's last one."""
        return pd.date_range(history.index[-1], periods=horizon + 1, freq=self.frequency)[1:]

    def forecast(self, horizon: int, *, history: pd.DataFrame | None = None,
                 future: pd.DataFrame | None = None) -> pd.Series:
        """Forecast ``horizon`` steps after the end of the training data, or of a history the caller gives.

        With a history (indexed by time, with the target and the data's columns),
        a model that keeps its own state of the series (``refit_on_history = True``:
        statistical models such as Prophet or exponential smoothing) is refit on
        it with the champion's parameters; a model on pipeline features keeps its
        fit and builds the features from the given history.

        A champion with future columns needs ``future``: a frame indexed by time
        (or holding the time column) with those columns for every forecast time.

        Returns:
            Forecasts indexed by their times.

        Raises:
            ValueError: For a horizon beyond the one the champion was validated on, or a
                ``future`` missing (or lacking a column or a time) when the champion has future columns.
        """
        trained_on, max_horizon = self._history(), self.max_horizon or 1
        if not 1 <= horizon <= max_horizon:
            raise ValueError(f"horizon must be between 1 and {self.max_horizon} (the horizon it was "
                             f"validated on), but got {horizon}")
        history = trained_on if history is None else history.sort_index()
        times = self.times_after(history, horizon)
        predictor = self
        if history is not trained_on and refits_on_history(self.model):
            predictor = fit_predictor(history, self.pipeline_unfitted or self.pipeline, copy.deepcopy(self.model),
                                      target=self.target, input_columns=self.input_columns,
                                      forecasting=True, time_column=self.time_column, horizon=max_horizon,
                                      future_columns=self.future_columns)
        values = predictor.model.predict(predictor._future_features(history, times, future))
        return pd.Series(np.asarray(values, dtype=float), index=times, name=self.target)


def fit_predictor(frame: pd.DataFrame, pipeline: Pipeline, model: Any, *, target: str, input_columns: list[str],
                  forecasting: bool, time_column: str | None, horizon: int = 1,
                  future_columns: list[str] | tuple = ()) -> FittedPredictor:
    """Fit the pipeline and model on every row (the champion's refit).

    For forecasting, the features are those known ``horizon`` steps past the data's
    end, as in every fold; the probe of those steps holds the history's last values
    of the future columns (known there, whatever their values).
    """
    fitted = pipeline.fit(frame)
    features = fitted.transform(frame).drop(columns=[target], errors="ignore")
    if not forecasting:
        model.fit(features, frame[target].loc[features.index])
        return FittedPredictor(fitted, model, target, input_columns)
    predictor = FittedPredictor(fitted, model, target, input_columns, time_column, frame, pipeline,
                                feature_columns=list(features.columns), max_horizon=horizon,
                                future_columns=list(future_columns))
    future = predictor.times_after(frame, horizon)
    probe = pd.DataFrame({c: frame[c].iloc[-1] for c in future_columns}, index=future)
    predictor.feature_columns = known_columns(predictor._future_features(frame, future, probe))
    features = complete_rows(features[predictor.feature_columns])
    model.fit(features, frame[target].loc[features.index])
    return predictor


class ChampionModel(PythonModel):
    """MLflow pyfunc wrapper: ``predict`` takes raw input rows (for forecasting: the times to forecast, with the
    future columns' values at those times)."""

    def __init__(self, predictor: FittedPredictor, metadata: dict[str, Any]) -> None:
        self.predictor = predictor
        self.metadata = metadata

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> np.ndarray:
        return self.predictor.predict(model_input)

    def forecast(self, horizon: int, *, history: pd.DataFrame | None = None,
                 future: pd.DataFrame | None = None) -> pd.Series:
        """See :meth:`FittedPredictor.forecast`; reach it with ``load_model(uri).unwrap_python_model()``."""
        return self.predictor.forecast(horizon, history=history, future=future)
