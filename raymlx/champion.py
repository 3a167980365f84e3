"""The champion as an MLflow pyfunc model: its fitted pipeline and model, applied to raw rows."""

from __future__ import annotations

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

    def features(self, rows: pd.DataFrame) -> pd.DataFrame:
        """Features of raw input rows."""
        if self.history is None:
            return self.pipeline.transform(rows[self.input_columns]).drop(columns=[self.target], errors="ignore")
        times = pd.DatetimeIndex(pd.to_datetime(rows[self.time_column]), name=self.history.index.name)
        future = pd.DataFrame(np.nan, index=times, columns=self.history.columns)
        frame = self.pipeline.transform(pd.concat([self.history, future]))
        return frame.loc[times].drop(columns=[self.target], errors="ignore")

    def predict(self, rows: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.model.predict(self.features(rows)))


def fit_predictor(frame: pd.DataFrame, pipeline: Pipeline, model: Any, *, target: str,
                  input_columns: list[str], forecasting: bool, time_column: str | None) -> FittedPredictor:
    """Fit the pipeline and model on every row (the champion's refit)."""
    fitted = pipeline.fit(frame)
    features = fitted.transform(frame).drop(columns=[target], errors="ignore")
    model.fit(features, frame[target].loc[features.index])
    return FittedPredictor(fitted, model, target, input_columns, time_column if forecasting else None,
                           frame if forecasting else None)


class ChampionModel(mlflow.pyfunc.PythonModel):
    """MLflow pyfunc wrapper: ``predict`` takes raw input rows (for forecasting: the times to forecast)."""

    def __init__(self, predictor: FittedPredictor, metadata: dict[str, Any]) -> None:
        self.predictor = predictor
        self.metadata = metadata

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> np.ndarray:
        return self.predictor.predict(model_input)
