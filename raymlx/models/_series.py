"""The time arithmetic the forecasting adapters share: the target on a regular grid, and which step
after the training data a row is."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["SeriesEnd", "regular_series"]


def _frequency(index: pd.DatetimeIndex) -> pd.DateOffset:
    """The index's time step: its own ``freq``, or one inferred from the whole index or from three
    consecutive time stamps (a pipeline may have dropped rows) that every time stamp lies on.

    Raises:
        ValueError: When no such step is found.
    """
    if index.freq is not None:
        return index.freq
    tried = set()
    for part in (index, *(index[i:i + 3] for i in range(len(index) - 2))):
        freq = pd.infer_freq(part) if len(part) >= 3 else None
        if freq is None or freq in tried:
            continue
        tried.add(freq)
        if (pd.date_range(index[0], index[-1], freq=freq).get_indexer(index) >= 0).all():
            return pd.tseries.frequencies.to_offset(freq)
    raise ValueError(f"cannot tell the time step of the target's {len(index)} time stamps from {index[0]} to "
                     f"{index[-1]}: forecasting needs a sorted, evenly spaced time index")


def regular_series(y: pd.Series) -> pd.Series:
    """The target on a regular time grid, with gaps (rows a pipeline dropped) interpolated."""
    if not isinstance(y.index, pd.DatetimeIndex):
        return pd.Series(y.to_numpy(dtype=float), index=pd.RangeIndex(len(y)), name=y.name)
    y = y.astype(float).sort_index()
    regular = y.asfreq(_frequency(y.index))
    return regular.interpolate(limit_direction="both") if regular.isna().any() else regular


class SeriesEnd:
    """Where a training series ends, to number the steps of the rows asked for afterwards."""

    def __init__(self, series: pd.Series) -> None:
        self.last = series.index[-1]
        self.freq = series.index.freq if isinstance(series.index, pd.DatetimeIndex) else None

    def steps(self, index: pd.Index) -> np.ndarray:
        """Steps after the end for each row: 1 is the first step after the training data.

        Rows without time stamps are taken to be the steps right after the end, in order.

        Raises:
            ValueError: For rows at or before the end, or between the series' time steps.
        """
        if self.freq is None or not isinstance(index, pd.DatetimeIndex):
            return np.arange(1, len(index) + 1)
        if len(index) == 0:
            return np.zeros(0, dtype=int)
        if index.min() <= self.last:
            raise ValueError(f"this model forecasts the rows after its training data, which ends at {self.last}, "
                             f"but got rows from {index.min()}")
        grid = pd.date_range(self.last, index.max(), freq=self.freq)
        steps = grid.get_indexer(index)
        if (steps < 0).any():
            raise ValueError(f"rows at {index[steps < 0][0]} are not on the series' time steps ({self.freq.freqstr})")
        return steps
