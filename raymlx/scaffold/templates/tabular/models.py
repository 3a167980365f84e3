"""Your own models: train functions that specs.yaml names as ``models.py:function``.

A train function receives one fold's training rows, after the model's pipeline,
and returns anything with ``predict(X)`` (classifiers also ``predict_proba(X)``):

    def train(X: pandas.DataFrame, y: pandas.Series, **params) -> fitted

raymlx calls it on every fold and scores the predictions on the fold's validation
rows with the spec's metric, so it competes on equal terms with the other models.
Its keyword parameters are what a search space may name; raymlx checks the names
before tuning starts. To add a model, write a function here (or name any class with
the scikit-learn API, e.g. ``xgboost:XGBRegressor``) and add an entry under ``models:``.
"""

from __future__ import annotations

from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import PolynomialFeatures


def polynomial_ridge(X, y, *, degree: int = 2, alpha: float = 1.0):
    """Ridge regression on the inputs and their products up to ``degree``.

    Args:
        X: Training inputs, one column per feature.
        y: Training target.
        degree: Highest power of the polynomial features (1: plain ridge).
        alpha: Strength of the L2 penalty; more features need more of it.

    Returns:
        The fitted scikit-learn pipeline.
    """
    model = make_pipeline(PolynomialFeatures(degree, include_bias=False), Ridge(alpha=alpha))
    return model.fit(X, y)
