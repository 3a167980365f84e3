"""The kernel explainer on models whose SHAP values are known (additive ones), and the mean |SHAP| chart."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import SplineTransformer

from raymlx.pipeline import FoldData
from raymlx.report.explain import BASE_COLUMN, SHAP_PREFIX, _importance, explain, importance_bars


class Additive:
    """A fitted model of no family shap knows (so the kernel explainer), each feature's part its own function."""

    parts = {"a": np.sin, "b": np.square, "c": lambda x: np.exp(x / 2)}

    def fit(self, X: pd.DataFrame, y: pd.Series) -> Additive:
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return sum(np.asarray(g(X[name].to_numpy())) for name, g in self.parts.items())


def test_kernel_shap_of_an_additive_model_is_each_part_less_its_training_mean():
    rng = np.random.default_rng(3)
    X = pd.DataFrame(rng.normal(size=(600, 3)) * [2.0, 1.0, 1.0], columns=["a", "b", "c"])
    fold = FoldData(X.iloc[:500], pd.Series(np.zeros(500)), X.iloc[500:], pd.Series(np.zeros(100)))
    explained = explain(Additive(), fold, task="regression", sample=40, background=100, budget_s=60, seed=0)
    assert explained.facts["explainer"] == "kernel" and explained.facts["shap_rows"] == 40
    values = explained.values
    rows = X.loc[values.index]
    for name, g in Additive.parts.items():
        # The Shapley value of an additive part: its value at the row less its mean over the background, here 100
        # of the training rows (their mean within a fifth of the part's spread of the training rows' mean).
        expected = g(rows[name].to_numpy()) - g(fold.X_train[name].to_numpy()).mean()
        spread = g(fold.X_train[name].to_numpy()).std()
        np.testing.assert_allclose(values[SHAP_PREFIX + name].to_numpy(), expected, atol=0.2 * spread)
    # Additive: the base value plus a row's SHAP values is the model's prediction.
    total = values[BASE_COLUMN] + values[[SHAP_PREFIX + name for name in Additive.parts]].sum(axis=1)
    np.testing.assert_allclose(total.to_numpy(), Additive().predict(rows), rtol=1e-9, atol=1e-9)


def test_kernel_shap_of_a_fitted_estimator_given_arrays_is_exact_column_for_column():
    """A scikit-learn estimator fitted on a frame is handed the explainer's arrays: each value must be its column's."""
    rng = np.random.default_rng(5)
    X = pd.DataFrame(rng.normal(size=(140, 3)), columns=["c", "a", "b"])
    y = pd.Series(np.sin(2 * X["a"]) + X["b"] ** 2 - 3 * np.abs(X["c"]))
    fold = FoldData(X.iloc[:100], y.iloc[:100], X.iloc[100:], y.iloc[100:])
    model = make_pipeline(SplineTransformer(n_knots=6), Ridge(alpha=1e-3)).fit(fold.X_train, fold.y_train)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*feature names")  # the arrays have none: no warning gets out
        explained = explain(model, fold, task="regression", sample=12, background=100, budget_s=60, seed=0)
    assert explained.facts["explainer"] == "kernel"
    rows = X.loc[explained.values.index]
    background = fold.X_train  # all of it: 100 rows asked for
    for name in X.columns:  # additive, three features (every coalition evaluated): exact Shapley values
        swapped = [rows.assign(**{name: value}) for value in background[name]]
        expected = model.predict(rows) - np.mean([model.predict(frame) for frame in swapped], axis=0)
        np.testing.assert_allclose(explained.values[SHAP_PREFIX + name].to_numpy(), expected, atol=1e-6)


def test_the_mean_shap_chart_shows_the_largest_features_the_rest_summed_and_every_name_whole():
    names = [f"feature_{i}" for i in range(20)] + ["a_feature_name_longer_than_any_margin_would_be_by_default"]
    mean = np.arange(1.0, 22.0)  # the long name's is the largest
    labels, values = importance_bars(mean, names)
    assert labels[:2] == [names[-1], "feature_19"] and labels[-1] == "Sum of 10 other features"
    assert values[:11] == list(mean[::-1][:11]) and values[-1] == pytest.approx(mean[:10].sum())
    assert importance_bars(mean[:12], names[:12])[0] == names[:12][::-1]  # twelve fit: no sum
    chart = _importance(mean, names)
    pixels = np.asarray(Image.open(io.BytesIO(chart.png)).convert("L"))
    # The long name is drawn whole: nothing dark touches the left edge, where a clipped name would be cut.
    assert pixels[:, :3].min() > 200 and pixels[:, 3:40].min() < 100
