"""The kernel explainer on a model whose SHAP values are known: an additive one, f(x) = g0(x0) + g1(x1) + g2(x2)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from raymlx.pipeline import FoldData
from raymlx.report.explain import BASE_COLUMN, SHAP_PREFIX, explain


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
