"""Code that test specs name by ``user_code.py:attr`` (a model, a train function, a metric, a step)."""

from __future__ import annotations

import numpy as np
import pandas as pd


class MeanRegressor:
    """Predicts the training mean, shifted by ``offset``."""

    def __init__(self, offset: float = 0.0, scale: float = 1.0) -> None:
        self.offset = offset
        self.scale = scale

    def fit(self, X: pd.DataFrame, y: pd.Series) -> MeanRegressor:
        self.mean_ = float(np.mean(y))
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return np.full(len(X), self.scale * self.mean_ + self.offset)


def mean_error(y_true, y_pred) -> float:
    """Mean signed error: a metric of the user's own, with no mode of its own."""
    return float(np.mean(np.asarray(y_pred) - np.asarray(y_true)))


def add_one(frame: pd.DataFrame, column: str = "x1") -> pd.DataFrame:
    """A stateless step."""
    return frame.assign(**{column: frame[column] + 1})
