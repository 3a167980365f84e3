"""A train function: raymlx calls it on each fold's training rows and scores what it returns.

The protocol is ``train(X, y, **params) -> fitted``, where ``fitted`` has
``predict(X)``. The search space in specs.yaml names the keyword parameters.
"""

from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import PolynomialFeatures


def polynomial_ridge(X, y, *, degree: int = 2, alpha: float = 1.0):
    """Ridge regression on polynomial features of the inputs."""
    model = make_pipeline(PolynomialFeatures(degree, include_bias=False), Ridge(alpha=alpha))
    return model.fit(X, y)
