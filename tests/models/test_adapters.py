"""One contract every built-in model adapter meets (Optuna's ``BasicSamplerTestCase`` pattern).

Each adapter is fitted on one forecasting fold of a synthetic daily series and must
forecast exactly that fold's window from what was known at the cutoff.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from dataclasses import dataclass
from typing import Any, Callable

import cloudpickle
import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestRegressor
from sklearn.neural_network import MLPRegressor

from raymlx.folds import Fold
from raymlx.models import DartsModel, ExponentialSmoothing, LinearRegressionModel, NaiveSeasonal, Prophet, Theta
from raymlx.models.base import parameter_names
from raymlx.pipeline import FoldData, FunctionStep, Pipeline, fold_features
from raymlx.registry import UnresolvedReference
from raymlx.steps import DropIncompleteRows, Lags, StandardScale, calendar

HORIZON = 7
DAYS = 200
needs_prophet = pytest.mark.skipif(importlib.util.find_spec("prophet") is None, reason="prophet is not installed")
needs_darts = pytest.mark.skipif(importlib.util.find_spec("darts") is None, reason="darts is not installed")


def daily_series() -> pd.DataFrame:
    """A slow trend, a weekly cycle and noise, indexed by day like a forecasting frame."""
    index = pd.date_range("2021-01-01", periods=DAYS, freq="D", name="date")
    t = np.arange(DAYS)
    noise = np.random.default_rng(0).normal(0, 1, DAYS)
    return pd.DataFrame({"y": 20 + 0.03 * t + 5 * np.sin(2 * np.pi * t / 7) + noise}, index=index)


FRAME = daily_series()
FOLD = Fold(0, np.arange(DAYS - HORIZON), np.arange(DAYS - HORIZON, DAYS), FRAME.index[DAYS - HORIZON - 1])
PIPELINE = Pipeline([Lags(["y"], [7, 14]), FunctionStep(calendar), DropIncompleteRows(), StandardScale()])


def features(frame: pd.DataFrame) -> FoldData:
    return fold_features(frame, FOLD, PIPELINE, target="y", forecasting=True)


ADAPTERS = [
    pytest.param(lambda: NaiveSeasonal(season_length=7), id="NaiveSeasonal"),
    pytest.param(lambda: Prophet(yearly_seasonality=False), id="Prophet", marks=needs_prophet),
    pytest.param(lambda: Prophet(yearly_seasonality=False, regressors=["y_lag7"]), id="Prophet-regressor",
                 marks=needs_prophet),
    pytest.param(lambda: DartsModel("ExponentialSmoothing", trend="none"), id="DartsModel", marks=needs_darts),
    pytest.param(lambda: ExponentialSmoothing(damped=True), id="ExponentialSmoothing", marks=needs_darts),
    pytest.param(lambda: Theta(seasonality_period=7), id="Theta", marks=needs_darts),
    pytest.param(lambda: LinearRegressionModel(lags=14), id="LinearRegressionModel", marks=needs_darts),
    pytest.param(lambda: RandomForestRegressor(n_estimators=50, random_state=0), id="RandomForestRegressor"),
    pytest.param(lambda: MLPRegressor(hidden_layer_sizes=(16,), solver="lbfgs", max_iter=5000, random_state=0),
                 id="MLPRegressor"),
]
# Every adapter gets the weekly cycle: its error is at most this fraction of the training mean's.
MARGIN = 0.5


@dataclass
class Fitted:
    build: Callable[[], Any]
    model: Any
    data: FoldData
    predictions: np.ndarray


@pytest.fixture(scope="class", params=ADAPTERS)
def fitted(request) -> Fitted:
    data = features(FRAME)
    model = request.param().fit(data.X_train, data.y_train)
    return Fitted(request.param, model, data, np.asarray(model.predict(data.X_valid)))


def rmse(actual: pd.Series, predicted: np.ndarray) -> float:
    return float(np.sqrt(np.mean((actual.to_numpy() - predicted) ** 2)))


class TestAdapterContract:
    def test_predicts_one_finite_value_per_window_row(self, fitted):
        assert fitted.predictions.shape == (HORIZON,)
        assert np.isfinite(fitted.predictions).all()

    def test_beats_the_training_mean(self, fitted):
        baseline = rmse(fitted.data.y_valid, np.full(HORIZON, fitted.data.y_train.mean()))
        assert rmse(fitted.data.y_valid, fitted.predictions) < MARGIN * baseline

    def test_hidden_future_does_not_change_predictions(self, fitted):
        """The window's true values, however wild, reach neither the features nor the forecast."""
        changed = FRAME.copy()
        changed.iloc[FOLD.valid] = 1_000.0
        data = features(changed)
        pd.testing.assert_frame_equal(data.X_valid, fitted.data.X_valid)
        predictions = fitted.build().fit(data.X_train, data.y_train).predict(data.X_valid)
        np.testing.assert_allclose(predictions, fitted.predictions, rtol=1e-9)

    def test_each_prediction_belongs_to_its_row(self, fitted):
        """A row's forecast depends on its time stamp, not on its position in X."""
        later = fitted.model.predict(fitted.data.X_valid.iloc[3:])
        np.testing.assert_allclose(later, fitted.predictions[3:], rtol=1e-9)

    def test_cloudpickle_round_trip(self, fitted):
        restored = cloudpickle.loads(cloudpickle.dumps(fitted.model))
        np.testing.assert_array_equal(restored.predict(fitted.data.X_valid), fitted.predictions)
        unfitted = cloudpickle.loads(cloudpickle.dumps(fitted.build()))
        assert type(unfitted) is type(fitted.model)

    def test_mlflow_model_round_trip_forecasts_the_fold_window(self, fitted, tmp_path):
        """Refit as a champion on the fold's training rows, saved and loaded as an MLflow model."""
        import mlflow.pyfunc

        from raymlx.champion import ChampionModel, fit_predictor

        history = FRAME.iloc[FOLD.train]
        predictor = fit_predictor(history, PIPELINE, fitted.build(), target="y", input_columns=["date"],
                                  forecasting=True, time_column="date", horizon=HORIZON)
        mlflow.pyfunc.save_model(str(tmp_path / "model"), python_model=ChampionModel(predictor, {}))
        loaded = mlflow.pyfunc.load_model(str(tmp_path / "model"))
        forecast = loaded.unwrap_python_model().forecast(HORIZON)
        assert list(forecast.index) == list(FRAME.index[FOLD.valid])
        np.testing.assert_allclose(forecast.to_numpy(), fitted.predictions, rtol=1e-6)
        rows = pd.DataFrame({"date": FRAME.index[FOLD.valid][:3]})
        np.testing.assert_allclose(loaded.predict(rows), fitted.predictions[:3], rtol=1e-6)


# ---- construction, imports and errors -------------------------------------------------------------

@pytest.mark.parametrize("cls", [NaiveSeasonal, Prophet, ExponentialSmoothing, Theta, LinearRegressionModel])
def test_adapters_name_their_parameters(cls):
    """raymlx checks search-space names against these; only the generic DartsModel takes anything."""
    assert parameter_names(cls)
    assert parameter_names(DartsModel) is None


def test_importing_and_building_adapters_loads_no_optional_dependency():
    code = ("import sys, raymlx.models as m; m.NaiveSeasonal(); m.Prophet(); m.ExponentialSmoothing(); m.Theta(); "
            "m.DartsModel('Theta'); assert 'prophet' not in sys.modules and 'darts' not in sys.modules, "
            "sorted(n for n in sys.modules if n.startswith(('prophet', 'darts')))")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_optional_dependency_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "prophet", None)  # what Python does for a module that is not installed
    data = features(FRAME)
    with pytest.raises(ImportError, match=re.escape("the Prophet model needs the optional package 'prophet', "
                                                    "which is not installed; install it with: "
                                                    "pip install 'raymlx[forecasting]' (or pip install prophet)")):
        Prophet().fit(data.X_train, data.y_train)


def test_naive_seasonal_repeats_the_last_season():
    index = pd.date_range("2024-01-01", periods=6, freq="D")
    model = NaiveSeasonal(season_length=3).fit(pd.DataFrame(index=index), pd.Series(np.arange(6.0), index=index))
    future = pd.DataFrame(index=pd.date_range("2024-01-07", periods=5, freq="D"))
    np.testing.assert_array_equal(model.predict(future), [3, 4, 5, 3, 4])
    with pytest.raises(ValueError, match=re.escape("this model forecasts the rows after its training data, "
                                                   "which ends at 2024-01-06 00:00:00, but got rows from 2024-01-05")):
        model.predict(pd.DataFrame(index=index[-2:]))


@needs_darts
@pytest.mark.parametrize(("model", "params", "error", "message"), [
    pytest.param("ExponentialSmoothing", {"trend": "linear"}, ValueError,
                 "ExponentialSmoothing parameter 'trend' must be one of multiplicative, additive, none, "
                 "but got 'linear'", id="bad-enum"),
    pytest.param("ExponentialSmoothin", {}, UnresolvedReference,
                 "'darts.models' has no attribute 'ExponentialSmoothin'; did you mean 'ExponentialSmoothing'?",
                 id="unknown-model"),
])
def test_darts_model_errors(model, params, error, message):
    data = features(FRAME)
    with pytest.raises(error, match=re.escape(message)):
        DartsModel(model, **params).fit(data.X_train, data.y_train)


def test_a_missing_optional_module_says_how_to_install_it():
    from raymlx._imports import import_optional

    with pytest.raises(ImportError, match=re.escape(
            "this test needs the optional package 'raymlx_no_such_module', which is not installed; install it with: "
            "pip install 'raymlx[forecasting]' (or pip install raymlx_no_such_module)")):
        import_optional("raymlx_no_such_module", extra="forecasting", needed_for="this test")
