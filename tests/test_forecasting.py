"""Forecasting end to end on the temperature example: one fold plan for every family, features once, a champion that forecasts."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from raymlx.checks import validate
from raymlx.folds import make_folds
from raymlx.spec_io import load_spec
from raymlx.tracking import MODEL_TAG, ROLE_TAG
from raymlx.experiment import compute_fold_features, run_experiment
from tests.conftest import ROOT

EXAMPLE = ROOT / "examples" / "temperature"
# One trial per model keeps the whole example (every family) to CI size.
SMALL_BUDGET = [f"models.{m}.search.num_samples=1" for m in (
    "seasonal_naive", "ridge", "random_forest", "gradient_boosting", "neural_net", "prophet",
    "exponential_smoothing", "theta", "darts_linear")] + ["models.random_forest.search.space.n_estimators.high=50"]

COUNTING_STEP = '''
from pathlib import Path

def count_calls(frame, *, log):
    with open(log, "a") as handle:
        handle.write("x\\n")
    return frame
'''


@pytest.fixture(scope="module")
def temperature(tmp_path_factory) -> Path:
    """The temperature example, whose Prophet and Darts models need the forecasting extra."""
    for module in ("prophet", "darts"):
        pytest.importorskip(module, reason="the forecasting extra is not installed: pip install 'raymlx[forecasting]'")
    root = tmp_path_factory.mktemp("temperature")
    shutil.copytree(EXAMPLE, root, dirs_exist_ok=True, ignore=shutil.ignore_patterns("mlflow.db", "mlartifacts", ".raymlx"))
    (root / "counting.py").write_text(COUNTING_STEP)
    return root


@pytest.fixture(scope="module")
def experiment(ray_runtime, temperature):
    log = temperature / "calls.log"
    overrides = SMALL_BUDGET + [
        "pipelines.counted=[{step: lagged}, {step: counting.py:count_calls, params: {log: calls.log}}]".replace(
            "calls.log", str(log)),
        "models.ridge.pipeline=counted", "models.ridge.search.num_samples=8",
    ]
    loaded = load_spec(temperature / "specs.yaml", overrides=overrides)
    frame = validate(loaded)
    return loaded, frame, run_experiment(loaded, frame), log


def test_every_family_is_scored_on_the_same_windows(temperature):
    loaded = load_spec(temperature / "specs.yaml")
    frame = validate(loaded)
    folds = make_folds(frame, loaded.spec)
    features = compute_fold_features(loaded.spec, frame, folds, base_dir=loaded.base_dir)
    assert set(features) == {None, "lagged", "scaled"}
    for i, fold in enumerate(folds):
        window = frame.index[fold.valid]
        assert len(window) == 7 and window[0] > fold.cutoff and (window[0] - fold.cutoff).days == 1
        for data in (f[i] for f in features.values()):
            assert data.X_valid.index.equals(window)
            pd.testing.assert_series_equal(data.y_valid, frame["temp_max"].iloc[fold.valid])
            assert data.X_train.index.max() <= fold.cutoff


def test_all_families_ran_and_logged_the_same_fold_plan(experiment):
    loaded, frame, result, _ = experiment
    assert {row.model for row in result.leaderboard} == set(loaded.spec.models)  # seasonal_naive is the baseline
    assert all(row.failed == 0 and len(row.fold_scores) == 5 for row in result.leaderboard), result.leaderboard
    client = MlflowClient(result.tracking_uri)
    plan = client.download_artifacts(result.session_run_id, "folds.json")
    import json
    windows = json.loads(Path(plan).read_text())
    assert [w["valid_end"][:10] for w in windows][-1] == "2015-12-31"
    assert all(w["valid_rows"] == 7 for w in windows)


def test_pipeline_features_are_computed_once_per_fold_not_per_trial(experiment):
    loaded, _, result, log = experiment
    ridge = next(r for r in result.leaderboard if r.model == "ridge")
    assert ridge.trials == 8
    calls = len(log.read_text().splitlines())
    folds = loaded.spec.validation.folds
    if result.champion != "ridge":
        assert calls == folds
    else:  # plus the champion's refit, its forecast-window probe and its signature example
        assert folds < calls <= folds + 6, calls


def test_the_champion_forecasts_past_the_data_and_from_a_given_history(experiment):
    loaded, frame, result, _ = experiment
    mlflow.set_tracking_uri(result.tracking_uri)
    model = mlflow.pyfunc.load_model(f"models:/{loaded.spec.registered_model_name}@champion")
    champion = model.unwrap_python_model()
    ahead = champion.forecast(7)
    assert list(ahead.index) == list(pd.date_range("2016-01-01", periods=7, freq="D"))
    assert np.isfinite(ahead).all() and ahead.between(-10, 25).all()  # Seattle in early January, °C
    times = pd.DataFrame({"date": ahead.index[:3]})
    np.testing.assert_allclose(model.predict(times), ahead.iloc[:3].to_numpy())
    history = frame.loc[:"2014-06-30"]
    midsummer = champion.forecast(7, history=history)
    assert midsummer.index[0] == pd.Timestamp("2014-07-01") and midsummer.mean() > ahead.mean() + 5
    with pytest.raises(ValueError, match="horizon must be between 1 and 7"):
        champion.forecast(8)


def test_every_trial_run_belongs_to_a_model_parent(experiment):
    _, _, result, _ = experiment
    client = MlflowClient(result.tracking_uri)
    trials = client.search_runs([result.experiment_id], f"tags.`{ROLE_TAG}` = 'trial'", max_results=500)
    counts = pd.Series([t.data.tags[MODEL_TAG] for t in trials]).value_counts().to_dict()
    assert counts == {row.model: row.trials for row in result.leaderboard}


KNOWN_AHEAD_SPEC = """
name: {name}
task: forecasting
data: {{uri: known.csv, target: y, time_column: date{future}}}
validation: {{folds: 3, horizon: 7}}
metric: {{name: rmse}}
tracking: {{uri: "sqlite:///{name}.db"}}
pipelines:
  lagged: [{{step: lags, params: {{columns: [y], lags: [7]}}}}]
models:
  ridge:
    model: sklearn.linear_model:Ridge
    pipeline: lagged
    params: {{alpha: 0.001}}
    search: {{num_samples: 1}}
"""


@pytest.fixture(scope="module")
def known_ahead(ray_runtime, tmp_path_factory):
    """A daily series driven by a column known ahead (y = 5x + noise), tuned with and without declaring it."""
    root = tmp_path_factory.mktemp("known_ahead")
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, 150)
    dates = pd.date_range("2024-01-01", periods=150, freq="D")
    pd.DataFrame({"date": dates, "x": x, "y": 5 * x + rng.normal(0, 0.05, 150)}).to_csv(root / "known.csv", index=False)
    results = {}
    for name, future in (("declared", ", future_columns: [x]"), ("undeclared", "")):
        (root / f"{name}.yaml").write_text(KNOWN_AHEAD_SPEC.format(name=name, future=future))
        loaded = load_spec(root / f"{name}.yaml")
        results[name] = loaded, run_experiment(loaded, validate(loaded))
    return results


def test_a_declared_future_column_is_used_in_the_window_and_scores_far_better(known_ahead):
    (_, declared), (_, undeclared) = known_ahead["declared"], known_ahead["undeclared"]
    declared_ridge, undeclared_ridge = (next(r for r in board.leaderboard if r.model == "ridge")
                                        for board in (declared, undeclared))
    assert declared_ridge.failed == undeclared_ridge.failed == 0
    assert declared_ridge.score < 0.2 < 1.0 < undeclared_ridge.score


def test_the_champion_forecasts_from_the_future_values_it_is_given(known_ahead):
    loaded, result = known_ahead["declared"]
    mlflow.set_tracking_uri(result.tracking_uri)
    model = mlflow.pyfunc.load_model(f"models:/{loaded.spec.registered_model_name}@champion")
    champion = model.unwrap_python_model()
    times = pd.date_range("2024-05-30", periods=7, freq="D", name="date")
    future = pd.DataFrame({"x": np.linspace(0, 1, 7)}, index=times)
    ahead = champion.forecast(7, future=future)
    assert list(ahead.index) == list(times)
    np.testing.assert_allclose(ahead, 5 * future["x"], atol=0.2)
    shifted = champion.forecast(7, future=future.assign(x=future["x"] + 1))
    np.testing.assert_allclose(shifted - ahead, 5.0, atol=0.2)
    rows = future.reset_index().iloc[:3]
    np.testing.assert_allclose(model.predict(rows), ahead.iloc[:3].to_numpy())
    with pytest.raises(ValueError, match="needs the future values of x"):
        champion.forecast(7)
    with pytest.raises(ValueError, match="future lacks the time"):
        champion.forecast(7, future=future.iloc[:5])
    with pytest.raises(ValueError, match=r"future lacks the column\(s\) x"):
        champion.forecast(7, future=future.rename(columns={"x": "z"}))
