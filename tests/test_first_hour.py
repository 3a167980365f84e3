"""End to end on small fixed data, one experiment per task: a factory and a train function each tune and can
register; the automatic baseline row scores what a hand computation says and never wins by default; a Darts
class named by reference scores on a forecasting board; the same spec gives the same board twice."""

from __future__ import annotations

import math
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from raymlx.api import load_champion
from raymlx.champion.register import register_champion
from raymlx.folds import make_folds
from raymlx.checks import validate
from raymlx.metrics import get_metric
from raymlx.experiment import run_experiment
from raymlx.spec_io import load_spec
from raymlx.tracking import BASELINE_TAG, EXPERIMENT_KIND_TAG, MODEL_TAG, ROLE_TAG

USER = '''
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.tree import DecisionTreeClassifier

def make_ridge(alpha=1.0):
    return Ridge(alpha=alpha)

def train_linear(X, y, fit_intercept=True):
    return LinearRegression(fit_intercept=fit_intercept).fit(X, y)

def make_tree(max_depth=3, random_state=None):
    return DecisionTreeClassifier(max_depth=max_depth, random_state=random_state)

def train_logistic(X, y, C=1.0):
    return LogisticRegression(C=C).fit(X, y)
'''

TWO_TRIALS = "{num_samples: 2, space: {%s: {type: float, low: 0.1, high: 10.0, log: true}}}"

SPECS = {
    "regression": f"""
        task: regression
        data: {{uri: data.csv, target: y}}
        validation: {{strategy: kfold, folds: 2, shuffle: false}}
        models:
          factory: {{model: models/user_first_hour.py:make_ridge, search: {TWO_TRIALS % 'alpha'}}}
          train: {{model: models/user_first_hour.py:train_linear}}
        """,
    "classification": f"""
        task: classification
        data: {{uri: data.csv, target: y}}
        validation: {{strategy: kfold, folds: 2, shuffle: false}}
        models:
          factory: {{model: models/user_first_hour.py:make_tree, search: {{num_samples: 2, space: {{max_depth: {{type: int, low: 1, high: 3}}}}}}}}
          train: {{model: models/user_first_hour.py:train_logistic, search: {TWO_TRIALS % 'C'}}}
        """,
    "forecasting": f"""
        task: forecasting
        data: {{uri: data.csv, target: y, time_column: t}}
        validation: {{folds: 2, horizon: 7}}
        pipelines:
          lagged: [{{step: lags, params: {{columns: [y], lags: [7]}}}}]
        models:
          factory: {{model: models/user_first_hour.py:make_ridge, pipeline: lagged, search: {TWO_TRIALS % 'alpha'}}}
          train: {{model: models/user_first_hour.py:train_linear, pipeline: lagged}}
          holt_winters:
            model: darts.models:ExponentialSmoothing
            params: {{trend: additive, seasonal: additive, seasonal_periods: 7}}
        """,
}


def _data(task: str) -> pd.DataFrame:
    """Small fixed data sets whose baseline score is easy to compute by hand."""
    if task == "regression":  # y = 2x: two contiguous halves
        x = np.arange(20, dtype=float)
        return pd.DataFrame({"x": x, "y": 2 * x})
    if task == "classification":  # each half: x = 0..9, 'b' from x = 7 on: 7 'a' and 3 'b'
        x = np.tile(np.arange(10, dtype=float), 2)
        return pd.DataFrame({"x": x, "y": np.where(x >= 7, "b", "a")})
    t = np.arange(70)  # a weekly cycle on a trend of 0.1 a day
    return pd.DataFrame({"t": pd.date_range("2024-01-01", periods=70, freq="D"),
                         "y": (t % 7) * 3.0 + 0.1 * t})


def _project(root: Path, task: str, extra: str = "") -> Path:
    _data(task).to_csv(root / "data.csv", index=False)
    (root / "models").mkdir(exist_ok=True)
    (root / "models" / "user_first_hour.py").write_text(USER)
    spec = root / "specs.yaml"
    spec.write_text(f"name: first-hour-{task}\n" + textwrap.dedent(SPECS[task]) + extra)
    return spec


@pytest.fixture(scope="module", params=["regression", "classification", "forecasting"])
def experiment(request, ray_runtime, tmp_path_factory):
    task = request.param
    loaded = load_spec(_project(tmp_path_factory.mktemp(task), task))
    result = run_experiment(loaded, validate(loaded))
    yield task, loaded, result
    sys.modules.pop("user_first_hour", None)


def _hand_baseline(task: str) -> float:
    """The baseline's mean score over the two folds, computed from the data by hand."""
    y = _data(task)["y"].to_numpy()
    if task == "regression":  # the training half's mean predicted for the other half: rmse
        a, b = y[:10], y[10:]
        return (np.sqrt(np.mean((b - a.mean()) ** 2)) + np.sqrt(np.mean((a - b.mean()) ** 2))) / 2
    if task == "classification":  # majority 'a' is right on 7 of each half's 10 rows
        return 0.7
    return 0.7  # season 7 repeats last week: every step is one week of trend (0.7) short


def test_the_baseline_row_scores_what_a_hand_computation_says(experiment):
    task, _, result = experiment
    rows = {r.model: r for r in result.leaderboard}
    assert result.baseline == "baseline" and rows["baseline"].baseline
    assert rows["baseline"].score == pytest.approx(_hand_baseline(task))
    if task == "forecasting":
        assert rows["baseline"].params == {"season_length": 7}


def _predicts_well(task: str, predictor) -> bool:
    if task == "regression":
        return bool(np.allclose(predictor.predict(pd.DataFrame({"x": [0.0, 5.0]})), [0.0, 10.0], atol=0.5))
    if task == "classification":
        return list(predictor.predict(pd.DataFrame({"x": [0.0, 1.0]}))) == ["a", "a"]
    t = np.arange(70, 77)
    return bool(np.allclose(predictor.forecast(7).to_numpy(), (t % 7) * 3.0 + 0.1 * t, atol=0.3))


def test_factory_and_train_function_both_tune_and_register_a_champion(experiment):
    task, loaded, result = experiment
    rows = {r.model: r for r in result.leaderboard}
    for name in ("factory", "train"):
        assert rows[name].failed == 0 and not math.isnan(rows[name].score), rows[name].last_error
        assert rows[name].skill > 0  # every model beats the baseline on these data
    assert result.champion != "baseline" and result.beats_baseline is True
    assert result.champion == next(r.model for r in result.leaderboard if not r.baseline)
    other = next(r for r in result.leaderboard if r.model in ("factory", "train") and r.model != result.champion)
    frame = validate(loaded)
    again = register_champion(loaded, frame, other, metric=get_metric(loaded.spec.metric_spec.name),
                              folds=make_folds(frame, loaded.spec), tracking_uri=result.tracking_uri,
                              run_id=result.session_run_id, experiment_id=result.experiment_id)
    assert again.version == str(int(result.champion_version) + 1)
    for version in (result.champion_version, again.version):
        predictor = load_champion(model_uri=f"models:/{loaded.spec.registered_model_name}/{version}",
                                  tracking_uri=result.tracking_uri)
        assert _predicts_well(task, predictor), version


def test_a_darts_class_by_reference_scores_on_the_forecasting_board(experiment):
    task, _, result = experiment
    if task != "forecasting":
        pytest.skip("forecasting only")
    row = next(r for r in result.leaderboard if r.model == "holt_winters")
    assert row.failed == 0, row.last_error
    assert row.score < 0.05 and row.skill > 0.9  # trend plus weekly season: Holt-Winters fits it exactly


def test_mlflow_marks_the_baseline_and_opens_the_experiment_on_its_runs(experiment):
    _, _, result = experiment
    client = MlflowClient(result.tracking_uri)
    assert client.get_experiment(result.experiment_id).tags[EXPERIMENT_KIND_TAG[0]] == EXPERIMENT_KIND_TAG[1]
    parents = client.search_runs([result.experiment_id], f"tags.`{ROLE_TAG}` = 'model' and "
                                 f"tags.`raymlx.session` = '{result.session_run_id}'")
    marked = {r.data.tags[MODEL_TAG] for r in parents if r.data.tags.get(BASELINE_TAG) == "auto"}
    assert marked == {"baseline"}
    skills = {r.data.tags[MODEL_TAG]: r.data.metrics.get("skill_vs_baseline") for r in parents}
    assert skills["baseline"] == 0 and skills["factory"] > 0


WORSE = """
name: worse
task: regression
data: {uri: data.csv, target: y}
validation: {strategy: kfold, folds: 2, shuffle: false}
models:
  constant: {model: sklearn.dummy:DummyRegressor, params: {strategy: constant, constant: 1000}}
"""


def test_the_baseline_wins_only_when_the_spec_lets_it_and_can_be_turned_off(ray_runtime, tmp_path):
    _data("regression").to_csv(tmp_path / "data.csv", index=False)
    (tmp_path / "specs.yaml").write_text(WORSE)
    results = {}
    for case, overrides in {"default": [], "may_win": ["baseline.may_win=true"], "off": ["baseline=false"]}.items():
        loaded = load_spec(tmp_path / "specs.yaml", overrides=overrides)
        results[case] = run_experiment(loaded, validate(loaded))
    assert results["default"].beats_baseline is False and results["default"].champion == "constant"
    assert results["may_win"].beats_baseline is False and results["may_win"].champion == "baseline"
    assert [r.model for r in results["off"].leaderboard] == ["constant"] and results["off"].baseline is None
    assert results["off"].beats_baseline is None and results["off"].champion == "constant"


FOREST = """
name: same-seed
task: classification
data: {uri: data.csv, target: y}
validation: {strategy: holdout, test_size: 0.3, seed: 3}
models:
  forest:
    model: sklearn.ensemble:RandomForestClassifier
    params: {n_estimators: 5, max_features: 1, n_jobs: 1}
    search: {num_samples: 3, space: {max_depth: {type: int, low: 2, high: 8}}}
"""


def test_the_same_spec_gives_the_same_board_twice(ray_runtime, tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4))
    pd.DataFrame(X, columns=list("abcd")).assign(y=(X[:, 0] + rng.normal(size=200) > 0).astype(int)) \
        .to_csv(tmp_path / "data.csv", index=False)
    (tmp_path / "specs.yaml").write_text(FOREST)
    boards = []
    for _ in range(2):
        loaded = load_spec(tmp_path / "specs.yaml")
        result = run_experiment(loaded, validate(loaded))
        boards.append([(r.model, r.score, r.score_std, r.params, r.fold_scores) for r in result.leaderboard])
    assert boards[0] == boards[1]
    assert len({row[1] for row in boards[0]}) == 2  # the forest and the baseline


def test_a_spec_listing_the_baselines_model_has_that_entry_marked_instead_of_a_second(tmp_path):
    from raymlx.defaults import prepare
    from raymlx.folds import make_folds

    sys.modules.pop("user_first_hour", None)  # the module-scoped experiments' copy, from another folder
    spec = _project(tmp_path, "forecasting")
    spec.write_text(spec.read_text() + "  naive: {model: NaiveSeasonal, params: {season_length: 7}}\n")
    loaded = load_spec(spec)
    prepared, baseline = prepare(loaded, make_folds(validate(loaded), loaded.spec))
    assert baseline == "naive" and list(prepared.spec.models) == list(loaded.spec.models)
    unlisted, baseline = prepare(load_spec(_project(tmp_path, "forecasting")), make_folds(validate(loaded), loaded.spec))
    assert baseline == "baseline" and unlisted.spec.models["baseline"].search.space["season_length"].values == \
        [1, 7, 12, 24, 52]  # 365 is longer than the shortest fold's training part (56 rows)
    sys.modules.pop("user_first_hour", None)
