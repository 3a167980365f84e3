"""Scoring one configuration on every fold (``evaluate``), without a Ray runtime."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from sklearn.datasets import make_classification, make_regression
from sklearn.linear_model import LogisticRegression, Ridge

from raymlx.folds import make_folds
from raymlx.pipeline import Pipeline, fold_features
from raymlx.spec import Spec
from raymlx.steps import StandardScale
from raymlx.trainable import ModelPlan, TrialContext, evaluate

UNIT = Path(__file__).resolve().parent / "data" / "unit"


def folds_of(frame: pd.DataFrame, task: str, pipeline: Pipeline, folds: int = 3) -> list:
    spec = Spec(name="t", task=task, data={"uri": "d.csv", "target": "y"}, validation={"folds": folds},
                models={"m": {"model": "sklearn.linear_model:Ridge"}})
    return [fold_features(frame, fold, pipeline, target="y", forecasting=False) for fold in make_folds(frame, spec)]


@pytest.fixture(scope="module")
def regression() -> pd.DataFrame:
    X, y = make_regression(n_samples=60, n_features=3, noise=5.0, random_state=0)
    return pd.DataFrame(X, columns=["a", "b", "c"]).assign(y=y * 10 + 500)


@pytest.fixture(scope="module")
def folds(regression):
    return {None: folds_of(regression, "regression", Pipeline([])),
            "scaled": folds_of(regression, "regression", Pipeline([StandardScale(["a", "b", "c"])]), folds=2)}


def context(folds, metric: str = "rmse", mode: str = "min", **models: ModelPlan) -> TrialContext:
    return TrialContext(models=models, folds=folds, metric_name=metric, metric_mode=mode, base_dir=str(UNIT))


def rmse(y, p) -> float:
    return float(np.sqrt(skm.mean_squared_error(y, p)))


def test_result_has_mean_spread_and_each_fold(folds):
    ctx = context(folds, ridge=ModelPlan("sklearn.linear_model:Ridge", None, {"alpha": 1.0}))
    result = evaluate(ctx, "ridge", {})
    assert set(result) == {"rmse", "rmse_std", "rmse_fold0", "rmse_fold1", "rmse_fold2", "fit_time_s", "predictions"}
    per_fold = [result[f"rmse_fold{i}"] for i in range(3)]
    assert result["rmse"] == pytest.approx(np.mean(per_fold))
    assert result["rmse_std"] == pytest.approx(np.std(per_fold))
    assert result["rmse_std"] > 0
    assert result["fit_time_s"] >= 0
    expected = [rmse(f.y_valid, Ridge(alpha=1.0).fit(f.X_train, f.y_train).predict(f.X_valid)) for f in folds[None]]
    assert per_fold == pytest.approx(expected, rel=1e-9)
    # Each fold's predictions of its validation rows, in their order: the report's out-of-fold rows.
    for kept, f in zip(result["predictions"]["y_pred"], folds[None]):
        assert isinstance(kept, np.ndarray)  # not a list: Tune's experiment state encodes an array ~7x faster
        assert kept == pytest.approx(Ridge(alpha=1.0).fit(f.X_train, f.y_train).predict(f.X_valid).tolist(), rel=1e-9)


def test_searched_params_override_fixed_ones(folds):
    ctx = context(folds, ridge=ModelPlan("sklearn.linear_model:Ridge", None, {"alpha": 1.0}))
    fold = folds[None][0]
    expected = rmse(fold.y_valid, Ridge(alpha=500.0).fit(fold.X_train, fold.y_train).predict(fold.X_valid))
    assert evaluate(ctx, "ridge", {"alpha": 500.0})["rmse_fold0"] == pytest.approx(expected, rel=1e-9)
    assert evaluate(ctx, "ridge", {})["rmse_fold0"] != pytest.approx(expected, rel=1e-3)


def test_model_is_scored_on_its_own_pipelines_folds(folds):
    ctx = context(folds, ridge=ModelPlan("sklearn.linear_model:Ridge", "scaled"))
    result = evaluate(ctx, "ridge", {})
    assert {k for k in result if "_fold" in k} == {"rmse_fold0", "rmse_fold1"}
    fold = folds["scaled"][1]
    expected = rmse(fold.y_valid, Ridge().fit(fold.X_train, fold.y_train).predict(fold.X_valid))
    assert result["rmse_fold1"] == pytest.approx(expected, rel=1e-9)


def test_train_function_model(folds):
    ctx = context(folds, mean=ModelPlan("unit_code.py:train_mean", None, {"offset": 2.0}))
    result = evaluate(ctx, "mean", {})
    expected = [rmse(f.y_valid, np.full(len(f.y_valid), f.y_train.mean() + 2.0)) for f in folds[None]]
    assert [result[f"rmse_fold{i}"] for i in range(3)] == pytest.approx(expected, rel=1e-9)


def test_custom_metric_names_the_result_keys(folds):
    ctx = context(folds, "unit_code.py:mean_signed_error", "max",
                  mean=ModelPlan("unit_code.py:train_mean", None, {"offset": 2.0}))
    result = evaluate(ctx, "mean", {"offset": 5.0})
    assert set(result) == {"mean_signed_error", "mean_signed_error_std", "mean_signed_error_fold0",
                           "mean_signed_error_fold1", "mean_signed_error_fold2", "fit_time_s", "predictions"}
    expected = [f.y_train.mean() + 5.0 - f.y_valid.mean() for f in folds[None]]
    assert [result[f"mean_signed_error_fold{i}"] for i in range(3)] == pytest.approx(expected, rel=1e-9)


def test_train_function_classifier_with_a_probability_metric():
    X, y = make_classification(n_samples=90, n_features=4, random_state=2)
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"]).assign(y=np.array(["neg", "pos"])[y])
    folds = {None: folds_of(frame, "classification", Pipeline([]))}
    ctx = context(folds, "log_loss", "min", logistic=ModelPlan("unit_code.py:train_logistic", None, {"C": 0.5}))
    result = evaluate(ctx, "logistic", {})
    expected = [skm.log_loss(f.y_valid, LogisticRegression(C=0.5, max_iter=1000).fit(f.X_train, f.y_train)
                             .predict_proba(f.X_valid)) for f in folds[None]]
    assert [result[f"log_loss_fold{i}"] for i in range(3)] == pytest.approx(expected, rel=1e-6)
    assert result["log_loss"] == pytest.approx(np.mean(expected), rel=1e-6)


def test_train_function_that_returns_no_model(folds):
    ctx = context(folds, broken=ModelPlan("unit_code.py:train_nothing", None))
    message = "train function 'train_nothing' must return an object with predict(X), got int"
    with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
        evaluate(ctx, "broken", {})


def test_predictions_are_kept_only_when_asked_and_scores_do_not_change():
    X, y = make_classification(n_samples=90, n_features=4, random_state=3)
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"]).assign(y=np.array(["neg", "pos"])[y])
    folds = {None: folds_of(frame, "classification", Pipeline([]))}
    plan = ModelPlan("unit_code.py:train_logistic", None, {"C": 0.5})
    kept = evaluate(context(folds, "accuracy", "max", logistic=plan), "logistic", {})
    lean = evaluate(TrialContext({"logistic": plan}, folds, "accuracy", "max", str(UNIT), keep_predictions=False),
                    "logistic", {})
    assert [len(p) for p in kept["predictions"]["proba"]] == [len(f.y_valid) for f in folds[None]]
    assert "predictions" not in lean
    assert {k: v for k, v in lean.items() if k != "fit_time_s"} == {
        k: v for k, v in kept.items() if k not in ("fit_time_s", "predictions")}


_THREADS = """
import os, sys, threading
os.environ.pop("OMP_NUM_THREADS", None)
import raymlx.trainable  # as a lean runtime's worker does as it starts, before Ray sets the variable for its task
from threadpoolctl import threadpool_info
before = max(i["num_threads"] for i in threadpool_info())
os.environ["OMP_NUM_THREADS"] = "1"  # what Ray sets before a one-CPU task
seen = []

def trial():  # Tune runs each trial in a thread of its own; OpenMP's count is the thread's
    raymlx.trainable._threads(os.environ["OMP_NUM_THREADS"])
    seen.append(sorted({i["num_threads"] for i in threadpool_info()}))

for _ in range(2):
    thread = threading.Thread(target=trial)
    thread.start()
    thread.join()
print(before, seen)
"""


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="the libraries start one thread per core: one core shows nothing")
def test_a_worker_that_imported_scikit_learn_early_gets_the_threads_ray_gives_its_task():
    done = subprocess.run([sys.executable, "-c", _THREADS], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    before, after = done.stdout.split(" ", 1)
    assert int(before) > 1  # BLAS and OpenMP started a thread per core
    assert after.strip() == "[[1], [1]]"
