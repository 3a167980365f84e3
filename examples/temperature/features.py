"""Feature steps of the temperature example, written the way any user writes their own.

A step is a function ``f(frame, **params) -> frame`` (no fitting) or a class with
``fit(frame)`` and ``transform(frame)``. The frame is indexed by date.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def daylight_hours(frame: pd.DataFrame, *, latitude: float = 47.6) -> pd.DataFrame:
    """Hours between sunrise and sunset on each day: known in advance for any date.

    Uses the standard solar declination approximation; Seattle lies at 47.6° N.
    """
    day = frame.index.dayofyear.to_numpy()
    declination = np.radians(23.44) * np.sin(2 * np.pi * (284 + day) / 365)
    cos_hour_angle = -np.tan(np.radians(latitude)) * np.tan(declination)
    hours = 24 / np.pi * np.arccos(np.clip(cos_hour_angle, -1, 1))
    return frame.assign(daylight_hours=hours)
