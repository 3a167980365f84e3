"""End to end: a real local Ray runtime, a real sqlite MLflow store, the champion registered and loaded."""

from __future__ import annotations

import textwrap
from functools import partial

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from sklearn.linear_model import Ridge
from sklearn.tree import DecisionTreeRegressor

from raymlx.checks import validate
from raymlx.spec_io import load_spec
from raymlx.tracking import ERROR_TAG, MODEL_TAG, ROLE_TAG
from raymlx.experiment import run_experiment

SPEC = """
name: e2e
baseline: false  # this test counts runs and trials: no baseline row among them
task: regression
data: {uri: data/diabetes.csv, target: progression}
validation: {strategy: kfold, folds: 3}
metric: {name: rmse}
tracking: {uri: "sqlite:///mlflow.db"}
models:
  ridge:
    model: sklearn.linear_model:Ridge
    pipeline: scaled
    search:
      num_samples: 4
      space:
        alpha: {type: float, low: 0.01, high: 100.0, log: true}
  tree:
    model: sklearn.tree:DecisionTreeRegressor
    params: {random_state: 0}
    search:
      algorithm: random
      num_samples: 3
      space:
        max_depth: {type: int, low: 1, high: 6}
  broken:
    model: user_models.py:always_fails
    max_failures: 1
    search:
      num_samples: 2
      space:
        strength: {type: float, low: 0.0, high: 1.0}
pipelines:
  scaled:
    - step: standard_scale
"""

USER_MODELS = '''
CALLS = []

def always_fails(X, y, *, strength=0.5):
    raise RuntimeError("this method cannot fit")
'''


@pytest.fixture(scope="module")
def experiment(ray_runtime, tmp_path_factory):
    from tests.conftest import DIABETES
    import shutil

    root = tmp_path_factory.mktemp("e2e")
    (root / "data").mkdir()
    shutil.copy(DIABETES, root / "data" / "diabetes.csv")
    (root / "specs.yaml").write_text(textwrap.dedent(SPEC))
    (root / "user_models.py").write_text(USER_MODELS)
    loaded = load_spec(root / "specs.yaml")
    frame = validate(loaded)
    result = run_experiment(loaded, frame)
    return root, loaded, frame, result


def _runs(result, role):
    client = MlflowClient(result.tracking_uri)
    return client.search_runs([result.experiment_id], filter_string=f"tags.`{ROLE_TAG}` = '{role}'", max_results=1000)


def test_one_parent_run_per_model(experiment):
    _, loaded, _, result = experiment
    parents = _runs(result, "model")
    assert sorted(r.data.tags[MODEL_TAG] for r in parents) == sorted(loaded.spec.models)
    session_ids = {r.data.tags["mlflow.parentRunId"] for r in parents}
    assert session_ids == {result.session_run_id}


def test_child_runs_equal_trials_and_nest_under_their_model(experiment):
    _, _, _, result = experiment
    parents = {r.info.run_id: r.data.tags[MODEL_TAG] for r in _runs(result, "model")}
    trials = _runs(result, "trial")
    by_model = {}
    for run in trials:
        assert parents[run.data.tags["mlflow.parentRunId"]] == run.data.tags[MODEL_TAG]
        by_model[run.data.tags[MODEL_TAG]] = by_model.get(run.data.tags[MODEL_TAG], 0) + 1
    assert by_model == {row.model: row.trials for row in result.leaderboard}
    assert by_model == {"ridge": 4, "tree": 3, "broken": 2}


def test_leaderboard_best_equals_best_child_run(experiment):
    _, _, _, result = experiment
    trials = _runs(result, "trial")
    for row in result.leaderboard:
        if row.model == "broken":
            continue
        scores = [r.data.metrics["rmse"] for r in trials if r.data.tags[MODEL_TAG] == row.model]
        assert row.score == pytest.approx(min(scores))
        assert len(row.fold_scores) == 3
        assert np.mean(row.fold_scores) == pytest.approx(row.score)
    assert [r.score for r in result.leaderboard[:2]] == sorted(r.score for r in result.leaderboard[:2])


def test_failing_trials_are_recorded_and_do_not_stop_the_others(experiment):
    _, _, _, result = experiment
    broken = next(r for r in result.leaderboard if r.model == "broken")
    assert (broken.trials, broken.failed) == (2, 2)
    assert np.isnan(broken.score) and result.leaderboard[-1].model == "broken"
    statuses = [r.info.status for r in _runs(result, "trial") if r.data.tags[MODEL_TAG] == "broken"]
    assert statuses == ["FAILED", "FAILED"]
    assert all(r.failed == 0 for r in result.leaderboard if r.model != "broken")


def _standardised(frame: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    return (rows - frame.mean()) / frame.std(ddof=0)


# The spec's scored models and their pipelines' features, written out here to refit the winner independently.
REFIT = {"ridge": (Ridge, _standardised),
         "tree": (partial(DecisionTreeRegressor, random_state=0), lambda frame, rows: rows)}


def test_champion_alias_loads_and_predicts_raw_rows(experiment):
    _, loaded, frame, result = experiment
    best = next(r for r in result.leaderboard if r.model == result.champion)
    client = MlflowClient(result.tracking_uri)
    version = client.get_model_version_by_alias("e2e", "champion")
    assert str(version.version) == result.champion_version
    mlflow.set_tracking_uri(result.tracking_uri)
    model = mlflow.pyfunc.load_model("models:/e2e@champion")
    rows = frame.drop(columns=["progression"]).head(20)
    predicted = model.predict(rows)
    estimator, features = REFIT[best.model]
    inputs = frame.drop(columns=["progression"])
    fitted = estimator(**best.params).fit(features(inputs, inputs), frame["progression"])
    expected = fitted.predict(features(inputs, rows))
    np.testing.assert_allclose(predicted, expected, rtol=1e-6)


def test_spec_and_leaderboard_logged_on_the_session_run(experiment):
    _, _, _, result = experiment
    client = MlflowClient(result.tracking_uri)
    names = {a.path for a in client.list_artifacts(result.session_run_id)}
    assert {"specs.yaml", "leaderboard.csv"} <= names
    board = pd.read_csv(client.download_artifacts(result.session_run_id, "leaderboard.csv"))
    assert list(board["model"]) == [r.model for r in result.leaderboard]


CLASSIFICATION = """
name: clf
task: classification
data: {uri: data/clf.csv, target: label}
validation: {folds: 3}
metric: {name: roc_auc}
models:
  logistic:
    model: sklearn.linear_model:LogisticRegression
    pipeline: scaled
    search:
      num_samples: 3
      space:
        C: {type: float, low: 0.01, high: 10.0, log: true}
  tree:
    model: sklearn.tree:DecisionTreeClassifier
    search:
      algorithm: grid
      space:
        max_depth: {type: int, low: 1, high: 3}
pipelines:
  scaled:
    - step: standard_scale
"""


def test_classification_scores_probabilities_and_the_champion_predicts_labels(ray_runtime, tmp_path):
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=300, n_features=6, n_informative=4, random_state=0)
    (tmp_path / "data").mkdir()
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(6)]).assign(label=np.where(y == 1, "yes", "no"))
    frame.to_csv(tmp_path / "data" / "clf.csv", index=False)
    (tmp_path / "specs.yaml").write_text(textwrap.dedent(CLASSIFICATION))
    loaded = load_spec(tmp_path / "specs.yaml")
    result = run_experiment(loaded, validate(loaded))
    assert [r.trials for r in sorted(result.leaderboard, key=lambda r: r.model)] == [1, 3, 3]  # baseline, grids  # grid of 3 depths
    best = result.leaderboard[0]
    assert 0.5 < best.score <= 1.0 and best.score >= result.leaderboard[1].score  # roc_auc: higher is better
    mlflow.set_tracking_uri(result.tracking_uri)
    labels = mlflow.pyfunc.load_model("models:/clf@champion").predict(frame.drop(columns="label").head(50))
    assert set(labels) <= {"yes", "no"}
    assert (labels == frame["label"].head(50)).mean() > 0.7


SLEEPY = '''
import os
import time
from pathlib import Path

import numpy as np

FITTING = Path(__file__).with_name("fitting")  # one file per process that has begun a fit
met = False


def _meet(timeout_s=60.0):
    """Once per process: wait until another process fits too, so that trials able to run at once do,
    however long a loaded machine takes to start the second trial's worker."""
    global met
    FITTING.mkdir(exist_ok=True)
    (FITTING / str(os.getpid())).touch()
    deadline = time.monotonic() + timeout_s
    while not met and len(list(FITTING.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    met = True


class Sleepy:
    def __init__(self, seconds=0.4):
        self.seconds = seconds
    def fit(self, X, y):
        _meet()
        time.sleep(self.seconds)
        return self
    def predict(self, X):
        return np.zeros(len(X))

def broken(X, y, *, strength=1.0):
    raise ValueError("cannot fit this")
'''

CONCURRENT = """
name: concurrent
baseline: false  # this test counts runs and trials: no baseline row among them
runtime: {trials_on_driver: false}  # this test counts fits at once: every fit in one of the runtime's 2 CPUs
task: regression
data: {uri: data/diabetes.csv, target: progression}
validation: {folds: 2}
models:
  first:
    model: sleepy.py:Sleepy
    search: {num_samples: 3, space: {seconds: {type: float, low: 0.4, high: 0.5}}}
  second:
    model: sleepy.py:Sleepy
    search: {num_samples: 3, space: {seconds: {type: float, low: 0.4, high: 0.5}}}
  broken:
    model: sleepy.py:broken
    search: {num_samples: 1, space: {strength: {type: float, low: 0.0, high: 1.0}}}
"""


def _most_at_once(runs) -> int:
    events = sorted([(r.info.start_time, 1) for r in runs] + [(r.info.end_time, -1) for r in runs],
                    key=lambda e: (e[0], e[1]))
    now = most = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


def test_trials_of_every_model_run_at_the_same_time(ray_runtime, project):
    (project / "sleepy.py").write_text(SLEEPY)
    (project / "specs.yaml").write_text(textwrap.dedent(CONCURRENT))
    loaded = load_spec(project / "specs.yaml")
    result = run_experiment(loaded, validate(loaded))
    everything = _runs(result, "trial")
    (broken,) = [r for r in everything if r.data.tags[MODEL_TAG] == "broken"]
    assert broken.info.status == "FAILED" and broken.data.tags[ERROR_TAG] == "ValueError: cannot fit this"
    trials = [r for r in everything if r is not broken]
    assert len(trials) == 6
    assert _most_at_once(trials) == 2  # both CPUs of the shared runtime busy, never more
    after_failure = [r for r in trials if r.info.start_time >= broken.info.end_time]
    assert len(after_failure) >= 2 and _most_at_once(after_failure) == 2  # a failure frees its CPU
    models_seen_while_other_runs = {
        (a.data.tags[MODEL_TAG], b.data.tags[MODEL_TAG]) for a in trials for b in trials
        if a is not b and a.info.start_time < b.info.end_time and b.info.start_time < a.info.end_time}
    assert ("first", "second") in models_seen_while_other_runs


SAME_EITHER_WAY = """
name: either-way
baseline: false  # this test counts runs and trials: no baseline row among them
task: regression
data: {uri: data/diabetes.csv, target: progression}
validation: {folds: 3}
models:
  ridge:
    model: sklearn.linear_model:Ridge
    search: {algorithm: random, num_samples: 4, space: {alpha: {type: float, low: 0.01, high: 10.0, log: true}}}
  tree:
    model: sklearn.tree:DecisionTreeRegressor
    params: {random_state: 0}
    search: {algorithm: random, num_samples: 4, space: {max_depth: {type: int, low: 1, high: 8}}}
"""


def _logged(result) -> list:
    """What each trial run holds: its model, parameters, and every metric raymlx reports (with values)."""
    # trial_id: Ray's random hex id, logged as a metric by MLflowLoggerCallback when it happens to be all digits.
    skip = ("time_", "timestamp", "training_iteration", "iterations_since_restore", "done", "pid", "fit_time_s",
            "trial_id")
    return sorted((r.data.tags[MODEL_TAG], tuple(sorted(r.data.params.items())),
                   tuple(sorted((k, round(v, 9)) for k, v in r.data.metrics.items() if not k.startswith(skip))))
                  for r in _runs(result, "trial"))


def test_running_trials_at_once_changes_nothing_that_is_logged(ray_runtime, project, monkeypatch):
    # What mlflow.set_experiment leaves in the environment must not steer raymlx's runs elsewhere.
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", "0")
    (project / "specs.yaml").write_text(textwrap.dedent(SAME_EITHER_WAY))
    # Without the report, trials keep no predictions: what MLflow holds is the same.
    one_by_one = load_spec(project / "specs.yaml", overrides=["runtime.max_concurrent_trials=1",
                                                              "tracking.experiment=one-by-one", "report.enabled=false"])
    at_once = load_spec(project / "specs.yaml", overrides=["tracking.experiment=at-once"])
    slow, fast = (run_experiment(s, validate(s)) for s in (one_by_one, at_once))
    assert len(_logged(fast)) == 8
    assert _logged(fast) == _logged(slow)
    assert all(row.predictions for row in fast.leaderboard)
    assert not any(row.predictions for row in slow.leaderboard)
    metric_keys = {k for r in _runs(fast, "trial") for k in r.data.metrics}
    assert {"rmse", "rmse_std", "rmse_fold0", "rmse_fold2", "fit_time_s"} <= metric_keys
