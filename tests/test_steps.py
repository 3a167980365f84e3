"""Built-in steps: what each computes, the leaks it refuses, and that it learns from training rows only."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from raymlx.checks import check_leakage
from raymlx.folds import Fold
from raymlx.pipeline import Pipeline, fold_features
from raymlx.spec import Spec
from raymlx.steps import (ClipOutliers, DropIncompleteRows, FillMissing, Lags, Rolling, StandardScale, calendar,
                          clip_outliers, drop_incomplete_rows, lags, rolling)

HORIZON = 7


@pytest.fixture
def frame() -> pd.DataFrame:
    """Forty days of a target and one other reading."""
    index = pd.date_range("2024-01-01", periods=40, freq="D", name="date")
    rng = np.random.default_rng(0)
    return pd.DataFrame({"temp": 10 + rng.normal(0, 3, 40), "wind": rng.uniform(0, 8, 40)}, index=index)


def last_week_fold(frame: pd.DataFrame) -> Fold:
    n = len(frame)
    return Fold(0, np.arange(n - HORIZON), np.arange(n - HORIZON, n), frame.index[n - HORIZON - 1])


# ---- lags and rolling statistics -------------------------------------------------------------

def test_lags_are_values_that_many_rows_back(frame):
    out = Lags(["temp"], [1, 7]).transform(frame)
    assert list(out.columns) == ["temp", "wind", "temp_lag1", "temp_lag7"]
    pd.testing.assert_series_equal(out["temp_lag7"], frame["temp"].shift(7), check_names=False)


def test_lags_skip_absent_columns(frame):
    """At serving time the target column is absent."""
    out = Lags(["temp", "wind"], [7]).transform(frame.drop(columns="temp"))
    assert list(out.columns) == ["wind", "wind_lag7"]


def test_rolling_summarises_a_shifted_window(frame):
    out = Rolling(["temp"], [3], ["mean", "max"], shift=7).transform(frame)
    expected = frame["temp"].shift(7).rolling(3)
    pd.testing.assert_series_equal(out["temp_roll3_mean_lag7"], expected.mean(), check_names=False)
    pd.testing.assert_series_equal(out["temp_roll3_max_lag7"], expected.max(), check_names=False)
    assert out["temp_roll3_mean_lag7"].isna().sum() == 7 + 3 - 1


@pytest.mark.parametrize(("build", "message"), [
    pytest.param(lambda: Lags(["temp"], [0, 7]), "lags must be positive integers (rows back in time), but got [0, 7]",
                 id="lag-zero"),
    pytest.param(lambda: Lags(["temp"], [1.5]), "lags must be positive integers (rows back in time), but got [1.5]",
                 id="lag-float"),
    pytest.param(lambda: Rolling(["temp"], [7], shift=0),
                 "shift must be a positive integer (rows back in time), but got 0", id="shift-zero"),
    pytest.param(lambda: Rolling(["temp"], [7], ["maen"]),
                 "unknown rolling statistic 'maen' (choose from mean, std, min, max); did you mean 'mean'?",
                 id="unknown-stat"),
    pytest.param(lambda: ClipOutliers(lower=0.9, upper=0.1),
                 "`0 <= lower < upper <= 1` must hold, but got (lower=0.9, upper=0.1)", id="clip-bounds"),
    pytest.param(lambda: calendar(pd.DataFrame({"a": [1.0]}, index=pd.DatetimeIndex(["2024-01-01"])),
                                  features=["weekdays"]),
                 "unknown calendar feature 'weekdays' (choose from day_of_year, weekday, month); "
                 "did you mean 'weekday'?", id="calendar-feature"),
])
def test_bad_parameters_are_refused(build, message):
    with pytest.raises((ValueError, TypeError), match=re.escape(message)):
        build()


@pytest.mark.parametrize(("step", "message"), [
    pytest.param(Lags(["temp"], [3, 14]), "lag 3 is shorter than the horizon 7: the feature would use values "
                 "not yet known at the forecast cutoff; use lags >= 7", id="short-lag"),
    pytest.param(Lags(["temp"], [7, 14]), None, id="lags-at-horizon"),
    pytest.param(Rolling(["temp"], [7]), "shift 1 is shorter than the horizon 7: the feature would use values "
                 "not yet known at the forecast cutoff; use shift >= 7", id="short-shift"),
    pytest.param(Rolling(["temp"], [7], shift=7), None, id="shift-at-horizon"),
])
def test_leak_check(step, message):
    assert step.leak_check(HORIZON) == message


def test_spec_check_reports_leaking_steps():
    spec = Spec.model_validate({
        "name": "leaky", "task": "forecasting",
        "data": {"uri": "data.csv", "target": "temp", "time_column": "date"},
        "validation": {"horizon": HORIZON},
        "pipelines": {"features": [
            {"step": "lags", "params": {"columns": ["temp"], "lags": [1, 7]}},
            {"step": "rolling", "params": {"columns": ["temp"], "windows": [7], "shift": 7}},
            {"step": "raymlx.steps:rolling", "params": {"columns": ["temp"], "windows": [7], "shift": 2}},
        ]},
        "models": {"naive": {"model": "NaiveSeasonal"}},
    })
    assert [(path, message.split(":")[0]) for path, message in check_leakage(spec, ".")] == [
        (("pipelines", "features", 0, "params"), "lag 1 is shorter than the horizon 7"),
        (("pipelines", "features", 2, "params"), "shift 2 is shorter than the horizon 7"),
    ]


def test_lag_features_of_the_window_come_from_before_the_cutoff(frame):
    """With lags >= horizon every window row has its features, all from training rows."""
    fold = last_week_fold(frame)
    pipeline = Pipeline([Lags(["temp"], [7]), Rolling(["temp"], [3], shift=7)])
    data = fold_features(frame, fold, pipeline, target="temp", forecasting=True)
    known = frame["temp"].iloc[fold.train]
    np.testing.assert_array_equal(data.X_valid["temp_lag7"], known.iloc[-HORIZON:])
    assert data.X_valid[["temp_lag7", "temp_roll3_mean_lag7"]].notna().all().all()


# ---- calendar ----------------------------------------------------------------------------------

def test_calendar_features_of_a_known_date():
    index = pd.DatetimeIndex(["2024-01-01", "2024-07-01"])  # a Monday in January, a Monday in July
    out = calendar(pd.DataFrame({"temp": [1.0, 2.0]}, index=index))
    assert list(out.columns) == ["temp", "day_of_year_sin", "day_of_year_cos", "weekday", "month"]
    assert out["weekday"].tolist() == [0, 0]
    assert out["month"].tolist() == [1, 7]
    assert out["day_of_year_sin"].iloc[0] == pytest.approx(0.0)
    assert out["day_of_year_cos"].iloc[0] == pytest.approx(1.0)
    assert out["day_of_year_cos"].iloc[1] == pytest.approx(-1.0, abs=1e-3)


def test_calendar_features_can_be_chosen_and_need_a_time_index(frame):
    assert list(calendar(frame, features=["month"]).columns) == ["temp", "wind", "month"]
    with pytest.raises(TypeError, match=re.escape("calendar needs a frame indexed by time (set data.time_column), "
                                                  "but its index is a RangeIndex")):
        calendar(frame.reset_index())


# ---- clipping and dropping -----------------------------------------------------------------------

def test_clip_outliers_clips_to_training_quantiles(frame):
    step = ClipOutliers(columns=["temp", "absent"], lower=0.1, upper=0.9).fit(frame)
    out = step.transform(frame)
    low, high = frame["temp"].quantile([0.1, 0.9])
    assert out["temp"].min() == pytest.approx(low) and out["temp"].max() == pytest.approx(high)
    pd.testing.assert_series_equal(out["wind"], frame["wind"])
    assert set(step.bounds_) == {"temp"}
    assert list(step.transform(frame.drop(columns="temp")).columns) == ["wind"]


def test_drop_incomplete_rows_drops_training_rows_and_keeps_the_window(frame):
    """The forecasting example: the first rows have no lag yet; the window's raw values are hidden."""
    fold = last_week_fold(frame)
    pipeline = Pipeline([Lags(["temp"], [7, 14]), DropIncompleteRows()])
    data = fold_features(frame, fold, pipeline, target="temp", forecasting=True)
    assert data.X_train.index.equals(frame.index[14:len(frame) - HORIZON])
    assert data.X_valid.index.equals(frame.index[-HORIZON:])
    assert data.X_train.notna().all().all()


def test_drop_incomplete_rows_checks_the_named_columns_only(frame):
    frame = frame.assign(wind=frame["wind"].where(frame.index.day != 20))
    step = DropIncompleteRows(columns=["temp_lag7", "absent"])
    features = Lags(["temp"], [7]).transform(frame)
    out = step.fit(features).transform(features)
    assert out.index.equals(frame.index[7:])
    assert len(DropIncompleteRows().fit(features).transform(features)) == len(frame) - 8


def test_drop_incomplete_rows_keeps_rows_it_was_not_fitted_on(frame):
    step = DropIncompleteRows().fit(frame.iloc[:30])
    future = pd.DataFrame({"temp": np.nan, "wind": 1.0}, index=pd.date_range("2024-02-10", periods=3))
    assert len(step.transform(pd.concat([frame.iloc[:30], future]))) == 33


# ---- statistics come from the training rows only -------------------------------------------------

def _filled(train: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    return rows.fillna({c: np.nanmedian(train[c]) for c in train})


def _scaled(train: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({c: (rows[c] - np.nanmean(train[c])) / np.nanstd(train[c]) for c in train})


def _clipped(train: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({c: np.clip(rows[c], *np.nanquantile(train[c], [0.1, 0.9])) for c in train})


@pytest.mark.parametrize(("step", "by_hand"), [
    pytest.param(FillMissing(strategy="median"), _filled, id="fill_missing"),
    pytest.param(StandardScale(), _scaled, id="standard_scale"),
    pytest.param(ClipOutliers(lower=0.1, upper=0.9), _clipped, id="clip_outliers"),
])
@pytest.mark.parametrize("forecasting", [False, True], ids=["tabular", "forecasting"])
def test_statistics_come_from_training_rows_only(frame, step, by_hand, forecasting):
    """Both parts' features are the training rows' statistics applied (computed here by hand), however
    the validation rows are rewritten. For forecasting, ``temp`` is known over the window (a future column)."""
    fold = last_week_fold(frame)
    frame = frame.assign(temp=frame["temp"].where(frame.index.day != 5))  # gaps in both parts, for fill_missing
    changed = frame.copy()
    changed.iloc[fold.valid] = changed.iloc[fold.valid] * 100 + 1_000
    train = frame.iloc[fold.train]
    future = ["temp"] if forecasting else []
    pipeline = Pipeline([step])
    data = fold_features(frame, fold, pipeline, target="wind", forecasting=forecasting, future_columns=future)
    other = fold_features(changed, fold, pipeline, target="wind", forecasting=forecasting, future_columns=future)
    expected_train = by_hand(train, train)[["temp"]]
    if forecasting:  # training rows without every feature are left out
        expected_train = expected_train.dropna()
    for part in (data, other):
        pd.testing.assert_frame_equal(part.X_train, expected_train, check_freq=False)
    assert data.X_valid["temp"].notna().sum() >= HORIZON - 1  # the window has values to compare
    for rows, part in ((frame, data), (changed, other)):
        window = by_hand(train, rows.iloc[fold.valid])[["temp"]]
        pd.testing.assert_frame_equal(part.X_valid, window, check_freq=False)


def test_fill_values_are_training_medians(frame):
    fold = last_week_fold(frame)
    data = fold_features(frame, fold, Pipeline([FillMissing()]), target="wind", forecasting=True)
    assert (data.X_valid["temp"] == frame["temp"].iloc[fold.train].median()).all()


def test_spec_names_are_the_step_classes():
    assert (lags, rolling, clip_outliers, drop_incomplete_rows) == (Lags, Rolling, ClipOutliers, DropIncompleteRows)


# ---- all-float frames are computed in one block, with the numbers of the column-by-column path ------------

EDGES = [0.0, -0.0, np.nan, 5e-324, -1e-300, 1e300, -1e308, np.inf, -np.inf, 0.1 + 0.2, 2.0 ** 53 + 1]


@pytest.mark.parametrize("step", [
    pytest.param(FillMissing(strategy="median"), id="fill_missing-median"),
    pytest.param(FillMissing(strategy="zero", columns=["temp", "absent"]), id="fill_missing-zero"),
    pytest.param(StandardScale(), id="standard_scale"),
    pytest.param(StandardScale(columns=["wind", "absent"]), id="standard_scale-named"),
    pytest.param(ClipOutliers(lower=0.1, upper=0.9), id="clip_outliers"),
])
def test_float_frames_get_the_numbers_of_mixed_frames(frame, step):
    """A frame of floats only takes the one-block path; the same frame with a text column beside takes pandas'
    column-by-column path. Both give the same frame, edge values and gaps included, and leave the input as it was."""
    rng = np.random.default_rng(1)
    rows = frame.assign(temp=frame["temp"].where(frame.index.day % 4 != 0), extra=rng.normal(0, 1e6, len(frame)))
    step = step.fit(rows.iloc[:30])
    edges = pd.DataFrame({"temp": EDGES, "wind": EDGES[::-1], "extra": EDGES[3:] + EDGES[:3]},
                         index=pd.date_range("2025-01-01", periods=len(EDGES), name="date"))
    for part in (rows, edges, rows.iloc[[5]]):
        before = part.copy()
        floats = step.transform(part)
        mixed = step.transform(part.assign(label="x")).drop(columns="label")
        pd.testing.assert_frame_equal(floats, mixed, check_exact=True)
        pd.testing.assert_frame_equal(part, before, check_exact=True)
        assert floats.index.equals(part.index) and list(floats.columns) == list(part.columns)


def test_a_step_on_every_column_lays_its_output_out_as_on_some():
    """Scaling every column skips picking them out, yet gives the block in the same memory order as scaling some:
    models are handed the same arrays (a different order can change the last bits of their results)."""
    frame = pd.DataFrame(np.random.default_rng(2).normal(size=(50, 3)), columns=["a", "b", "c"])
    every = StandardScale().fit(frame).transform(frame)
    some = StandardScale(columns=["a", "b"]).fit(frame).transform(frame)
    assert every.to_numpy().flags.c_contiguous == some.to_numpy().flags.c_contiguous
    assert every._mgr.blocks[0].values.flags.f_contiguous == some._mgr.blocks[0].values.flags.f_contiguous
    np.testing.assert_array_equal(every[["a", "b"]].to_numpy(), some[["a", "b"]].to_numpy())
