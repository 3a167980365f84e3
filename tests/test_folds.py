"""The fold plan: exact window positions for time series, full coverage and stratification otherwise."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from raymlx.errors import DataError
from raymlx.folds import make_folds
from raymlx.spec import Spec


def make_spec(task: str = "regression", **validation) -> Spec:
    return Spec(name="folds", task=task, data={"uri": "data.csv", "target": "y", "time_column": "date"},
                validation=validation, models={"m": {"model": "sklearn.linear_model:LinearRegression"}})


def series(n: int) -> pd.DataFrame:
    """A forecasting frame: ``n`` days indexed by time."""
    index = pd.date_range("2024-01-01", periods=n, freq="D", name="date")
    return pd.DataFrame({"x": np.arange(n, dtype=float), "y": np.arange(n, dtype=float) * 2}, index=index)


def table(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"x": rng.normal(size=n), "y": rng.normal(size=n)})


def labelled(counts: dict[str, int]) -> pd.DataFrame:
    """A classification frame with its labels sorted, so unstratified blocks would be one class."""
    labels = [label for label, count in counts.items() for _ in range(count)]
    return pd.DataFrame({"x": np.arange(len(labels), dtype=float), "y": labels})


# ---- time-ordered windows --------------------------------------------------------------------------

@pytest.mark.parametrize(("n", "folds", "horizon"), [
    pytest.param(30, 4, 3, id="30-rows"),
    pytest.param(13, 4, 3, id="fewest-rows"),
    pytest.param(10, 2, 1, id="horizon-1"),
])
def test_expanding_window_positions(n, folds, horizon):
    frame = series(n)
    plan = make_folds(frame, make_spec("forecasting", strategy="expanding_window", folds=folds, horizon=horizon))
    assert [f.index for f in plan] == list(range(folds))
    for i, fold in enumerate(plan):
        start = n - (folds - i) * horizon
        np.testing.assert_array_equal(fold.train, np.arange(start))
        np.testing.assert_array_equal(fold.valid, np.arange(start, start + horizon))
        assert fold.cutoff == frame.index[start - 1]
    assert plan[-1].valid[-1] == n - 1


def test_windows_follow_their_training_rows_directly():
    plan = make_folds(series(40), make_spec("forecasting", strategy="expanding_window", folds=5, horizon=4))
    for fold in plan:
        assert len(fold.valid) == 4
        np.testing.assert_array_equal(fold.valid, fold.train[-1] + 1 + np.arange(4))
    assert [len(f.train) for f in plan] == [20, 24, 28, 32, 36]


def test_sliding_window_trains_on_the_last_window_rows():
    plan = make_folds(series(40), make_spec("forecasting", strategy="sliding_window", folds=3, horizon=5, window=8))
    for i, fold in enumerate(plan):
        start = 40 - (3 - i) * 5
        np.testing.assert_array_equal(fold.train, np.arange(start - 8, start))
        np.testing.assert_array_equal(fold.valid, np.arange(start, start + 5))


def test_time_windows_without_horizon_score_one_row_each():
    plan = make_folds(table(10), make_spec(strategy="expanding_window", folds=3))
    assert [f.valid.tolist() for f in plan] == [[7], [8], [9]]
    assert all(f.cutoff is None for f in plan)  # no time index outside forecasting


@pytest.mark.parametrize(("n", "folds", "horizon", "message"), [
    pytest.param(12, 4, 3, "12 rows are too few for 4 folds of horizon 3: need more than 12", id="exactly-enough"),
    pytest.param(5, 3, 2, "5 rows are too few for 3 folds of horizon 2: need more than 6", id="far-too-few"),
])
def test_too_few_rows_for_the_windows(n, folds, horizon, message):
    spec = make_spec("forecasting", strategy="expanding_window", folds=folds, horizon=horizon)
    with pytest.raises(DataError, match=f"^{re.escape(message)}$"):
        make_folds(series(n), spec)


# ---- k-fold -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("shuffle", [pytest.param(True, id="shuffled"), pytest.param(False, id="in-order")])
def test_kfold_validates_every_row_exactly_once(shuffle):
    n = 23
    plan = make_folds(table(n), make_spec(strategy="kfold", folds=5, shuffle=shuffle))
    assert len(plan) == 5
    counts = Counter(np.concatenate([f.valid for f in plan]).tolist())
    assert counts == Counter(range(n))
    for fold in plan:
        assert set(fold.train).isdisjoint(fold.valid)
        assert sorted([*fold.train, *fold.valid]) == list(range(n))


def test_kfold_shuffles_by_seed():
    def plan(seed):
        return [f.valid.tolist() for f in make_folds(table(30), make_spec(strategy="kfold", folds=3, seed=seed))]
    assert plan(1) == plan(1)
    assert plan(1) != plan(2)


def test_kfold_without_shuffle_keeps_blocks_in_order():
    plan = make_folds(table(9), make_spec(strategy="kfold", folds=3, shuffle=False))
    assert [f.valid.tolist() for f in plan] == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]


@pytest.mark.parametrize("shuffle", [pytest.param(True, id="shuffled"), pytest.param(False, id="in-order")])
def test_kfold_is_stratified_for_classification(shuffle):
    frame = labelled({"no": 30, "yes": 10})
    plan = make_folds(frame, make_spec("classification", strategy="kfold", folds=5, shuffle=shuffle))
    for fold in plan:
        assert Counter(frame["y"].iloc[fold.valid]) == {"no": 6, "yes": 2}
        assert Counter(frame["y"].iloc[fold.train]) == {"no": 24, "yes": 8}


def test_kfold_for_regression_is_not_stratified():
    """A continuous target cannot be stratified; asking for it would raise."""
    plan = make_folds(table(20), make_spec(strategy="kfold", folds=4))
    assert len(plan) == 4


def test_kfold_too_few_rows():
    with pytest.raises(DataError, match=f"^{re.escape('3 rows are too few for 5 folds')}$"):
        make_folds(table(3), make_spec(strategy="kfold", folds=5))


def test_kfold_every_class_with_fewer_members_than_folds():
    frame = labelled({"no": 3, "yes": 3})
    # the part after the colon is scikit-learn's own wording
    with pytest.raises(DataError, match=f"^{re.escape('cannot make the kfold folds: ')}.*members in each class"):
        make_folds(frame, make_spec("classification", strategy="kfold", folds=5))


# ---- holdout ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("n", "test_size", "valid_rows"), [
    pytest.param(50, 0.2, 10, id="even"),
    pytest.param(21, 0.25, 6, id="rounded-up"),
])
def test_holdout_size(n, test_size, valid_rows):
    plan = make_folds(table(n), make_spec(strategy="holdout", test_size=test_size))
    assert len(plan) == 1
    (fold,) = plan
    assert len(fold.valid) == valid_rows
    assert sorted([*fold.train, *fold.valid]) == list(range(n))
    assert list(fold.train) == sorted(fold.train) and list(fold.valid) == sorted(fold.valid)


def test_holdout_without_shuffle_holds_out_the_last_rows():
    (fold,) = make_folds(table(10), make_spec(strategy="holdout", test_size=0.3, shuffle=False))
    assert fold.valid.tolist() == [7, 8, 9]
    assert fold.train.tolist() == list(range(7))


def test_holdout_is_stratified_for_classification():
    frame = labelled({"no": 40, "yes": 10})
    (fold,) = make_folds(frame, make_spec("classification", strategy="holdout", test_size=0.2))
    assert Counter(frame["y"].iloc[fold.valid]) == {"no": 8, "yes": 2}


# ---- scikit-learn's own limits become data errors ------------------------------------------------

@pytest.mark.parametrize(("task", "strategy"), [
    pytest.param("regression", "kfold", id="kfold"),
    pytest.param("forecasting", "expanding_window", id="expanding-window"),
])
def test_one_fold_is_a_data_error_not_a_crash(task, strategy):
    with pytest.raises(DataError, match=re.escape(f"{strategy} needs at least 2 folds, but got (folds=1)")):
        make_folds(series(20), make_spec(task, strategy=strategy, folds=1, horizon=2))


def test_holdout_class_with_one_member_is_a_data_error():
    frame = labelled({"no": 20, "yes": 1})
    with pytest.raises(DataError, match="^cannot make the holdout folds: The least populated class"):
        make_folds(frame, make_spec("classification", strategy="holdout"))
