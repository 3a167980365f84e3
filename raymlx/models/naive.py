"""The seasonal naive forecast, the baseline every forecasting model should beat."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd

from raymlx.models._series import SeriesEnd, regular_series

__all__ = ["NaiveSeasonal"]


class NaiveSeasonal:
    """Forecast each step with the value one season before: the training target's last
    season, repeated.

    Args:
        season_length: Rows in a season (7 for daily data with a weekly cycle).
    """

    refit_on_history: ClassVar[bool] = True  # it keeps its own state of the series: a new history means a new fit
    tasks: ClassVar[tuple[str, ...]] = ("forecasting",)  # it forecasts the target from its own past

    def __init__(self, season_length: int = 7) -> None:
        if season_length < 1:
            raise ValueError(f"season_length must be at least 1, but got {season_length}")
        self.season_length = season_length

    def fit(self, X: pd.DataFrame, y: pd.Series) -> NaiveSeasonal:
        series = regular_series(y)
        if len(series) < self.season_length:
            raise ValueError(f"NaiveSeasonal needs at least one season ({self.season_length} rows) "
                             f"of training data, but got {len(series)}")
        self.last_season_ = series.to_numpy()[-self.season_length:]
        self.end_ = SeriesEnd(series)
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        steps = self.end_.steps(X.index)
        return self.last_season_[(steps - 1) % self.season_length]
