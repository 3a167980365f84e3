"""The data a run holds grows with the data once, not with trials x data: trials read each fold's
features in place from Ray's object store, and only each model's best trial keeps its predictions."""

from __future__ import annotations

import gc
import json
import os
import textwrap
from collections import Counter, defaultdict

import pandas as pd
import pytest

from raymlx.checks import validate
from raymlx.experiment import run_experiment
from raymlx.features import compute_fold_features
from raymlx.folds import make_folds
from raymlx.pipeline import FoldData
from raymlx.spec_io import load_spec

SPEC = """
name: shared-features
baseline: false
task: regression
data: {uri: data/diabetes.csv, target: progression}
validation: {strategy: kfold, folds: 2}
metric: {name: rmse}
tracking: {uri: "sqlite:///mlflow.db"}
runtime: {trials_on_driver: false}  # every trial in the runtime's workers, which read the shared folds
models:
  recorded:
    model: recorder.py:train
    params: {log: LOG}
    search:
      algorithm: random
      num_samples: 6
      space:
        alpha: {type: float, low: 0.01, high: 100.0, log: true}
"""

RECORDER = '''
import json, os
from sklearn.linear_model import Ridge

def train(X, y, *, alpha=1.0, log=""):
    values = X.to_numpy()  # the frame's own block, no copy
    with open(log, "a") as file:
        file.write(json.dumps({"pid": os.getpid(), "first_row": int(X.index[0]), "rows": len(X),
                               "address": values.__array_interface__["data"][0],
                               "writeable": bool(values.flags.writeable)}) + "\\n")
    return Ridge(alpha=alpha).fit(X, y)
'''


@pytest.fixture(scope="module")
def shared_run(ray_runtime, tmp_path_factory):
    from tests.conftest import DIABETES
    import shutil

    root = tmp_path_factory.mktemp("shared")
    (root / "data").mkdir()
    shutil.copy(DIABETES, root / "data" / "diabetes.csv")
    log = root / "fits.jsonl"
    (root / "specs.yaml").write_text(textwrap.dedent(SPEC).replace("LOG", str(log)))
    (root / "recorder.py").write_text(RECORDER)
    loaded = load_spec(root / "specs.yaml")
    result = run_experiment(loaded, validate(loaded))
    return root, result, [json.loads(line) for line in log.read_text().splitlines()]


def test_trials_in_one_worker_read_the_same_fold_features_in_place(shared_run):
    _, _, fits = shared_run
    fits = [f for f in fits if f["pid"] != os.getpid()]  # the trials', not the champion's refit here
    assert len(fits) == 6 * 2  # every trial fits both folds
    # Read-only: the arrays are the object store's memory, not a copy a trial made for itself.
    assert not any(f["writeable"] for f in fits)
    per_worker = defaultdict(lambda: defaultdict(set))
    for f in fits:
        per_worker[f["pid"]][(f["first_row"], f["rows"])].add(f["address"])
    assert max(len(seen) for folds in per_worker.values() for seen in folds.values() if seen) == 1, per_worker
    # Some worker ran several trials (Tune reuses them): those read one and the same memory.
    fits_in = Counter(f["pid"] for f in fits)
    assert max(fits_in.values()) >= 2 * 2, fits_in


def test_only_the_best_trial_keeps_its_predictions(shared_run):
    root, result, _ = shared_run
    (row,) = result.leaderboard
    assert [len(fold) for fold in row.predictions["y_pred"]] == [221, 221]  # the best's, both folds
    results = list((root / ".raymlx" / "ray_results").glob("*/*/result.json"))
    assert len(results) == 6 and not any("predictions" in r.read_text() for r in results)
    (state,) = (root / ".raymlx" / "ray_results").glob("*/experiment_state-*.json")
    assert state.read_text().count("y_pred") == 1  # of six trials, the best alone


TWO_PIPELINES = """
name: two-pipelines
task: regression
data: {uri: data/diabetes.csv, target: progression}
validation: {strategy: kfold, folds: 3}
metric: {name: rmse}
pipelines: {scaled: [{step: standard_scale}]}
models:
  ridge: {model: sklearn.linear_model:Ridge, pipeline: scaled}
  forest: {model: sklearn.ensemble:RandomForestRegressor}
"""


def _held_folds() -> int:
    return sum(isinstance(o, FoldData) for o in gc.get_objects())


def test_each_fold_moves_into_the_object_store_once_ray_is_up(ray_runtime, tmp_path):
    from tests.conftest import DIABETES
    import shutil

    (tmp_path / "data").mkdir()
    shutil.copy(DIABETES, tmp_path / "data" / "diabetes.csv")
    (tmp_path / "specs.yaml").write_text(TWO_PIPELINES)
    loaded = load_spec(tmp_path / "specs.yaml")
    frame = validate(loaded)
    folds = make_folds(frame, loaded.spec)
    before, held, answers = _held_folds(), [], iter([False, False] + [True] * 4)

    def ray_ready() -> bool:  # Ray comes up after the third of six folds (two pipelines x 3 folds)
        held.append(_held_folds() - before)
        return next(answers)

    shared = compute_fold_features(loaded.spec, frame, folds, base_dir=loaded.base_dir, ray_ready=ray_ready)
    # The driver held the folds computed while Ray started, then one at a time, each until it moved.
    assert held == [1, 2, 3, 1, 1, 1]
    assert all(isinstance(f, ray_runtime.ObjectRef) for fs in shared.values() for f in fs)
    kept = compute_fold_features(loaded.spec, frame, folds, base_dir=loaded.base_dir)  # without Ray: in the driver
    assert list(shared) == list(kept) == ["scaled", None]
    for name, fs in kept.items():
        assert all(isinstance(f, FoldData) for f in fs)
        for ref, fold in zip(shared[name], fs):
            stored = ray_runtime.get(ref)
            pd.testing.assert_frame_equal(stored.X_train, fold.X_train)
            pd.testing.assert_series_equal(stored.y_valid, fold.y_valid)
