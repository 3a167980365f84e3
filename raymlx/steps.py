"""Built-in pipeline steps, named in a spec by their short name (``step: fill_missing``)."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

__all__ = ["fill_missing", "select_columns", "drop_columns", "one_hot", "standard_scale"]


def _present(frame: pd.DataFrame, columns: list[str] | None, *, numeric: bool = False) -> list[str]:
    """The named columns that this frame has (at serving time the target is absent), or all of them."""
    if columns is None:
        pool = frame.select_dtypes("number").columns if numeric else frame.columns
        return list(pool)
    return [c for c in columns if c in frame.columns]


class FillMissing:
    """Fill missing values: numbers with a statistic of the training rows, or carried forward in time."""

    def __init__(self, strategy: Literal["median", "mean", "ffill", "zero"] = "median",
                 columns: list[str] | None = None) -> None:
        self.strategy = strategy
        self.columns = columns
        self.values_: dict[str, float] = {}

    def fit(self, frame: pd.DataFrame) -> FillMissing:
        columns = _present(frame, self.columns, numeric=True)
        if self.strategy in ("median", "mean"):
            self.values_ = getattr(frame[columns], self.strategy)().to_dict()
        else:
            self.values_ = dict.fromkeys(columns, 0.0)
        return self

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        columns = [c for c in self.values_ if c in frame.columns]
        frame = frame.copy()
        if self.strategy == "ffill":
            frame[columns] = frame[columns].ffill()
        return frame.fillna({c: self.values_[c] for c in columns})


def select_columns(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Keep only the named columns (those the frame has)."""
    return frame[_present(frame, columns)]


def drop_columns(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Drop the named columns (those the frame has)."""
    return frame.drop(columns=_present(frame, columns))


class OneHot:
    """One column per category seen in the training rows; unseen categories get all zeros."""

    def __init__(self, columns: list[str] | None = None) -> None:
        self.columns = columns
        self.categories_: dict[str, list] = {}

    def fit(self, frame: pd.DataFrame) -> OneHot:
        columns = self.columns or list(frame.select_dtypes(exclude="number").columns)
        self.categories_ = {c: sorted(frame[c].dropna().unique().tolist()) for c in _present(frame, columns)}
        return self

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.copy()
        for column, categories in self.categories_.items():
            if column in frame.columns:
                values = frame.pop(column)
                for category in categories:
                    frame[f"{column}={category}"] = (values == category).astype(np.float64)
        return frame


class StandardScale:
    """Centre and scale numeric columns with the training rows' mean and standard deviation."""

    def __init__(self, columns: list[str] | None = None) -> None:
        self.columns = columns
        self.stats_: dict[str, tuple[float, float]] = {}

    def fit(self, frame: pd.DataFrame) -> StandardScale:
        for column in _present(frame, self.columns, numeric=True):
            std = float(frame[column].std(ddof=0))
            self.stats_[column] = (float(frame[column].mean()), std if std > 0 else 1.0)
        return self

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.copy()
        for column, (mean, std) in self.stats_.items():
            if column in frame.columns:
                frame[column] = (frame[column] - mean) / std
        return frame


# Spec names are snake_case, like every other key of the spec.
fill_missing = FillMissing
one_hot = OneHot
standard_scale = StandardScale
