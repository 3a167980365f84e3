"""Code the unit tests name by ``unit_code.py:attr``: a metric, train functions, steps, nested attributes."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

NOT_A_STEP = 3


class Outer:
    """Holds a nested class, for ``unit_code.py:Outer.Inner.value``."""

    class Inner:
        value = 42


class Shift:
    """A small picklable object of this file's own class."""

    def __init__(self, by: float = 1.0) -> None:
        self.by = by


def double(x):
    return 2 * x


def mean_signed_error(y_true, y_pred) -> float:
    """A metric of the user's own (positive when predictions run high)."""
    return float(np.mean(np.asarray(y_pred, dtype=float) - np.asarray(y_true, dtype=float)))


class _MeanModel:
    def __init__(self, value: float) -> None:
        self.value = value

    def predict(self, X: pd.DataFrame) -> list[float]:
        return [self.value] * len(X)


def train_mean(X: pd.DataFrame, y: pd.Series, offset: float = 0.0) -> _MeanModel:
    """A train function: predicts the training mean plus ``offset``."""
    return _MeanModel(float(np.mean(y)) + offset)


def train_logistic(X: pd.DataFrame, y: pd.Series, C: float = 1.0) -> LogisticRegression:
    """A train function returning a fitted classifier (with predict_proba and classes_)."""
    return LogisticRegression(C=C, max_iter=1000).fit(X, y)


def train_nothing(X: pd.DataFrame, y: pd.Series) -> int:
    """A broken train function: returns no model."""
    return 3


def add_column(frame: pd.DataFrame, name: str, value: float) -> pd.DataFrame:
    """A stateless step."""
    return frame.assign(**{name: value})


class CenterColumn:
    """A fitted step: subtracts the mean the training rows had."""

    def __init__(self, column: str) -> None:
        self.column = column
        self.mean_: float | None = None

    def fit(self, frame: pd.DataFrame) -> CenterColumn:
        self.mean_ = float(frame[self.column].mean())
        return self

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        return frame.assign(**{self.column: frame[self.column] - self.mean_})
