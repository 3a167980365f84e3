"""Your own pipeline steps, named in specs.yaml as ``features.py:step``.

A step is either a function ``step(frame, **params) -> frame`` that learns nothing
(as below), or a class with ``fit(frame)`` and ``transform(frame)`` whose
statistics are learned on each fold's training rows only. ``params`` in the spec
become the keyword arguments. The frame is indexed by the time column. Within a
fold's forecast window only the time is known: build features from the time, or
from values at least a horizon back (the built-in ``lags`` and ``rolling`` steps).
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def fourier_terms(frame: pd.DataFrame, *, period: float = 365.25, order: int = 2) -> pd.DataFrame:
    """Add sine and cosine terms of the time: a smooth season that any regressor can use.

    Args:
        frame: The rows, indexed by a DatetimeIndex.
        period: Length of the season in days (365.25: the year, 7: the week).
        order: Number of harmonics; each adds a sine and a cosine column.

    Returns:
        The frame with ``2 * order`` new columns, known in advance for any date.
    """
    days = (frame.index - pd.Timestamp("2000-01-01")).days.to_numpy()
    terms = {}
    for k in range(1, order + 1):
        angle = 2 * np.pi * k * days / period
        terms[f"sin_{period:g}_{k}"] = np.sin(angle)
        terms[f"cos_{period:g}_{k}"] = np.cos(angle)
    return frame.assign(**terms)
