"""Your own models: train functions that specs.yaml names as ``models.py:function``.

A train function receives one fold's training rows, after the model's pipeline,
and returns anything with ``predict(X)``:

    def train(X: pandas.DataFrame, y: pandas.Series, **params) -> fitted

raymlx calls it on every fold and scores the predictions on the fold's `horizon`
rows with the spec's metric, so it competes on equal terms with the other models.
Its keyword parameters are what a search space may name; raymlx checks the names
before tuning starts. To add a model, write a function here (or name any class with
the scikit-learn API, or a built-in adapter such as ``Prophet``) and add an entry
under ``models:``.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import Ridge


def recency_weighted_ridge(X, y, *, alpha: float = 1.0, half_life: int = 60):
    """Ridge regression that weighs recent rows more: a row's weight halves every ``half_life`` rows back.

    Args:
        X: Training inputs, one row per time step, oldest first.
        y: Training target.
        alpha: Strength of the L2 penalty.
        half_life: Rows back at which a row counts half as much as the newest one.

    Returns:
        The fitted regressor.
    """
    age = np.arange(len(X))[::-1]
    return Ridge(alpha=alpha).fit(X, y, sample_weight=0.5 ** (age / half_life))
