"""Your own pipeline steps, named in specs.yaml as ``features.py:step``.

A step is either a function ``step(frame, **params) -> frame`` that learns nothing
(as below), or a class with ``fit(frame)`` and ``transform(frame)`` whose
statistics are learned on each fold's training rows only. ``params`` in the spec
become the keyword arguments. The target column is absent when the served model
predicts, so a step must not need it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def ratio(frame: pd.DataFrame, *, numerator: str, denominator: str, name: str | None = None) -> pd.DataFrame:
    """Add the ratio of two columns as a new column (missing where the denominator is 0).

    Args:
        frame: The rows, one column per input.
        numerator: Column divided.
        denominator: Column it is divided by.
        name: Name of the new column; default ``{numerator}_per_{denominator}``.

    Returns:
        The frame with the new column.
    """
    quotient = frame[numerator] / frame[denominator].replace(0, np.nan)
    return frame.assign(**{name or f"{numerator}_per_{denominator}": quotient})
