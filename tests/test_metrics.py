"""Metrics: each built-in agrees with scikit-learn, a user's metric loads from a file, scoring uses the right output."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.datasets import make_classification
from sklearn.linear_model import LinearRegression, LogisticRegression

from raymlx.metrics import BUILTIN_METRICS, get_metric, score
from raymlx.registry import UnresolvedReference

UNIT = Path(__file__).resolve().parent / "data" / "unit"

Y_REAL = np.array([3.0, -0.5, 2.0, 7.0, 4.2])
P_REAL = np.array([2.5, 0.0, 2.1, 8.0, 3.0])
Y_BIN = np.array([0, 1, 1, 0, 1, 1, 0, 0])
P_BIN = np.array([0, 1, 0, 0, 1, 0, 1, 0])
Y_MULTI = np.array([0, 1, 2, 2, 1, 0, 2, 2])
P_MULTI = np.array([0, 2, 2, 2, 1, 0, 1, 0])
Y_WORDS = np.array(["no", "yes", "yes", "no", "yes", "yes", "no", "no"])
P_WORDS = np.array(["no", "yes", "no", "no", "yes", "no", "yes", "no"])


@pytest.mark.parametrize(("name", "y_true", "y_pred", "expected"), [
    pytest.param("rmse", Y_REAL, P_REAL, math.sqrt(skm.mean_squared_error(Y_REAL, P_REAL)), id="rmse"),
    pytest.param("mae", Y_REAL, P_REAL, skm.mean_absolute_error(Y_REAL, P_REAL), id="mae"),
    pytest.param("mape", Y_REAL, P_REAL, skm.mean_absolute_percentage_error(Y_REAL, P_REAL), id="mape"),
    pytest.param("r2", Y_REAL, P_REAL, skm.r2_score(Y_REAL, P_REAL), id="r2"),
    pytest.param("accuracy", Y_MULTI, P_MULTI, skm.accuracy_score(Y_MULTI, P_MULTI), id="accuracy"),
    pytest.param("f1", Y_BIN, P_BIN, skm.f1_score(Y_BIN, P_BIN), id="f1-binary-scores-class-1"),
    pytest.param("f1", Y_MULTI, P_MULTI, skm.f1_score(Y_MULTI, P_MULTI, average="macro"), id="f1-multiclass-macro"),
    pytest.param("f1", Y_WORDS, P_WORDS, skm.f1_score(Y_WORDS, P_WORDS, average="macro"), id="f1-labels-macro"),
])
def test_builtin_agrees_with_sklearn(name, y_true, y_pred, expected):
    assert BUILTIN_METRICS[name].function(y_true, y_pred) == pytest.approx(expected, rel=1e-12)


def test_f1_cases_differ_by_average():
    """The f1 cases above would not tell binary, macro and weighted apart if these were equal."""
    assert skm.f1_score(Y_BIN, P_BIN) != pytest.approx(skm.f1_score(Y_BIN, P_BIN, average="macro"))
    assert skm.f1_score(Y_MULTI, P_MULTI, average="macro") != pytest.approx(
        skm.f1_score(Y_MULTI, P_MULTI, average="weighted"))


@pytest.mark.parametrize(("name", "mode", "needs_proba"), [
    pytest.param("rmse", "min", False, id="rmse"),
    pytest.param("mae", "min", False, id="mae"),
    pytest.param("mape", "min", False, id="mape"),
    pytest.param("r2", "max", False, id="r2"),
    pytest.param("accuracy", "max", False, id="accuracy"),
    pytest.param("f1", "max", False, id="f1"),
    pytest.param("log_loss", "min", True, id="log_loss"),
    pytest.param("roc_auc", "max", True, id="roc_auc"),
])
def test_builtin_modes(name, mode, needs_proba):
    metric = get_metric(name)
    assert (metric.name, metric.mode, metric.needs_proba) == (name, mode, needs_proba)
    assert metric.function is BUILTIN_METRICS[name].function


def test_a_stated_mode_overrides_the_builtin_one():
    metric = get_metric("r2", "min")
    assert metric.mode == "min"
    assert BUILTIN_METRICS["r2"].mode == "max"  # the table itself is not changed


# ---- a user's metric -----------------------------------------------------------------------------

def test_custom_metric_from_a_file():
    metric = get_metric("unit_code.py:mean_signed_error", "max", base_dir=str(UNIT))
    assert (metric.name, metric.mode, metric.needs_proba) == ("mean_signed_error", "max", False)
    assert metric.function([1.0, 2.0], [2.0, 5.0]) == 2.0


def test_custom_metric_from_a_file_relative_to_base_dir():
    metric = get_metric("unit/unit_code.py:mean_signed_error", "min", base_dir=str(UNIT.parent))
    assert metric.function([1.0], [0.0]) == -1.0


def test_custom_metric_from_a_module():
    metric = get_metric("sklearn.metrics:median_absolute_error", "min")
    assert metric.name == "median_absolute_error"
    assert metric.function is skm.median_absolute_error


def test_custom_metric_needs_a_mode():
    message = "metric 'unit_code.py:mean_signed_error' needs a mode (min or max)"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        get_metric("unit_code.py:mean_signed_error", base_dir=str(UNIT))


def test_custom_metric_that_does_not_resolve():
    message = "'unit_code.py' has no attribute 'mean_signed_eror'; did you mean 'mean_signed_error'?"
    with pytest.raises(UnresolvedReference, match=f"^{re.escape(message)}$"):
        get_metric("unit_code.py:mean_signed_eror", "min", base_dir=str(UNIT))


# ---- scoring a fitted model ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def binary():
    X, y = make_classification(n_samples=120, n_features=5, random_state=0)
    model = LogisticRegression(max_iter=1000).fit(X[:80], y[:80])
    return model, X[80:], y[80:]


@pytest.fixture(scope="module")
def three_classes():
    X, y = make_classification(n_samples=150, n_features=6, n_informative=4, n_classes=3, random_state=1)
    labels = np.array(["ant", "bee", "cat"])[y]
    model = LogisticRegression(max_iter=1000).fit(X[:100], labels[:100])
    return model, X[100:], labels[100:]


def test_score_log_loss_uses_probabilities(binary):
    model, X, y = binary
    expected = skm.log_loss(y, model.predict_proba(X))
    assert score(get_metric("log_loss"), model, X, y) == pytest.approx(expected, rel=1e-12)


def test_score_roc_auc_uses_the_positive_class_probability(binary):
    model, X, y = binary
    expected = skm.roc_auc_score(y, model.predict_proba(X)[:, 1])
    assert score(get_metric("roc_auc"), model, X, y) == pytest.approx(expected, rel=1e-12)
    # labels alone would score differently: the probabilities were used
    assert expected != pytest.approx(skm.roc_auc_score(y, model.predict(X)))


def test_score_binary_with_word_labels_takes_the_later_label_as_positive(binary):
    model, X, y = binary
    words = np.array(["neg", "pos"])
    worded = LogisticRegression(max_iter=1000).fit(X, words[y])
    expected = skm.roc_auc_score(y, worded.predict_proba(X)[:, 1])
    assert score(get_metric("roc_auc"), worded, X, words[y]) == pytest.approx(expected, rel=1e-12)
    assert expected > 0.5  # the positive column was the right one


def test_score_roc_auc_multiclass_one_vs_rest(three_classes):
    model, X, y = three_classes
    expected = skm.roc_auc_score(y, model.predict_proba(X), multi_class="ovr")
    assert score(get_metric("roc_auc"), model, X, y) == pytest.approx(expected, rel=1e-12)


def test_score_log_loss_when_a_class_is_absent_from_the_rows(three_classes):
    """A fold's validation rows may lack a class; the model's classes still define the columns."""
    model, X, y = three_classes
    rows = y != "cat"
    expected = skm.log_loss(y[rows], model.predict_proba(X[rows]), labels=model.classes_)
    assert score(get_metric("log_loss"), model, X[rows], y[rows]) == pytest.approx(expected, rel=1e-12)


def test_score_label_metric_uses_predictions(three_classes):
    model, X, y = three_classes
    assert score(get_metric("accuracy"), model, X, y) == skm.accuracy_score(y, model.predict(X))


def test_score_custom_metric_on_a_regressor():
    X = np.arange(10, dtype=float).reshape(-1, 1)
    model = LinearRegression().fit(X, 3 * X[:, 0])
    metric = get_metric("unit_code.py:mean_signed_error", "min", base_dir=str(UNIT))
    assert score(metric, model, X, 3 * X[:, 0] - 2) == pytest.approx(2.0)


# ---- F1 decides binary or macro from every class, not one fold ------------------------------------

def test_f1_when_predictions_hold_a_class_the_rows_lack():
    y_true = np.array([0, 1, 0, 1, 1])
    y_pred = np.array([0, 2, 0, 1, 1])
    expected = skm.f1_score(y_true, y_pred, average="macro")
    assert BUILTIN_METRICS["f1"].function(y_true, y_pred) == pytest.approx(expected)


def test_f1_uses_the_models_classes_when_a_fold_holds_two_of_three():
    from sklearn.linear_model import LogisticRegression

    X = np.arange(30, dtype=float).reshape(-1, 1)
    y = np.repeat([0, 1, 2], 10)
    model = LogisticRegression().fit(X, y)
    fold = slice(0, 20)  # rows of classes 0 and 1 only
    expected = skm.f1_score(y[fold], model.predict(X[fold]), average="macro", labels=[0, 1, 2])
    assert score(get_metric("f1"), model, X[fold], y[fold]) == pytest.approx(expected)
