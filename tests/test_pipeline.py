"""Pipelines: expanding pipelines of pipelines, fitting copies, and per-fold features that cannot leak."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from raymlx.folds import Fold
from raymlx.pipeline import FunctionStep, Pipeline, build_pipeline, expand_steps, fold_features, make_step
from raymlx.spec import StepSpec
from raymlx.steps import FillMissing, Lags, StandardScale

UNIT = Path(__file__).resolve().parent / "data" / "unit"


def steps(*names: str) -> list[StepSpec]:
    return [StepSpec(step=name) for name in names]


# ---- pipelines of pipelines ----------------------------------------------------------------------

def test_pipeline_of_pipelines_is_flattened_in_order():
    pipelines = {
        "clean": steps("fill_missing", "clip_outliers"),
        "features": steps("clean", "lags"),
        "all": steps("features", "standard_scale", "clean"),
    }
    assert [s.step for s in expand_steps("all", pipelines)] == [
        "fill_missing", "clip_outliers", "lags", "standard_scale", "fill_missing", "clip_outliers"]


def test_expanded_steps_keep_their_params():
    pipelines = {"inner": [StepSpec(step="lags", params={"columns": ["y"], "lags": [7]})], "outer": steps("inner")}
    (step,) = expand_steps("outer", pipelines)
    assert step.params == {"columns": ["y"], "lags": [7]}


def test_a_pipeline_used_twice_is_not_a_cycle():
    pipelines = {"base": steps("fill_missing"), "left": steps("base"), "right": steps("base"),
                 "top": steps("left", "right")}
    assert [s.step for s in expand_steps("top", pipelines)] == ["fill_missing", "fill_missing"]


@pytest.mark.parametrize(("pipelines", "start", "message"), [
    pytest.param({"a": steps("b"), "b": steps("fill_missing", "a")}, "a",
                 "pipelines refer to each other in a cycle: a -> b -> a", id="two"),
    pytest.param({"a": steps("a")}, "a", "pipelines refer to each other in a cycle: a -> a", id="itself"),
    pytest.param({"top": steps("a"), "a": steps("b"), "b": steps("c"), "c": steps("a")}, "top",
                 "pipelines refer to each other in a cycle: top -> a -> b -> c -> a", id="entered-from-outside"),
])
def test_cycle(pipelines, start, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        expand_steps(start, pipelines)


# ---- building steps ---------------------------------------------------------------------------------

def test_build_pipeline_without_a_name_is_empty():
    pipeline = build_pipeline(None, {}, base_dir=".")
    frame = pd.DataFrame({"x": [1.0, 2.0]})
    assert pipeline.steps == []
    pd.testing.assert_frame_equal(pipeline.fit(frame).transform(frame), frame)


def test_build_pipeline_resolves_builtins_files_and_nested_pipelines():
    pipelines = {
        "clean": [StepSpec(step="fill_missing", params={"strategy": "median"})],
        "model": [StepSpec(step="clean"),
                  StepSpec(step="unit_code.py:add_column", params={"name": "bias", "value": 1.0}),
                  StepSpec(step="unit_code.py:CenterColumn", params={"column": "x"})],
    }
    built = build_pipeline("model", pipelines, base_dir=str(UNIT)).steps
    assert [type(s).__name__ for s in built] == ["FillMissing", "FunctionStep", "CenterColumn"]
    assert isinstance(built[0], FillMissing) and built[0].strategy == "median"
    assert built[1].function.__name__ == "add_column" and built[1].params == {"name": "bias", "value": 1.0}
    assert built[2].column == "x"


def test_build_pipeline_rejects_a_reference_that_is_not_a_step():
    with pytest.raises(TypeError, match=f"^{re.escape('a step must be a class or a function, got int')}$"):
        build_pipeline("p", {"p": steps("unit_code.py:NOT_A_STEP")}, base_dir=str(UNIT))


def test_function_step_passes_its_params():
    def scale(frame, column, by):
        return frame.assign(**{column: frame[column] * by})

    step = make_step(scale, {"column": "x", "by": 3})
    assert isinstance(step, FunctionStep)
    frame = pd.DataFrame({"x": [1.0, 2.0], "z": [5.0, 6.0]})
    assert step.fit(frame) is step
    pd.testing.assert_frame_equal(step.transform(frame), pd.DataFrame({"x": [3.0, 6.0], "z": [5.0, 6.0]}))


# ---- fitting ----------------------------------------------------------------------------------------

def test_fit_returns_a_fitted_copy_and_leaves_the_pipeline_unfitted():
    pipeline = Pipeline([StandardScale(["x"])])
    first = pipeline.fit(pd.DataFrame({"x": [0.0, 2.0]}))
    second = pipeline.fit(pd.DataFrame({"x": [10.0, 30.0]}))
    assert pipeline.steps[0].stats_ == {}
    assert first.steps[0] is not pipeline.steps[0]
    assert first.steps[0].stats_ == {"x": (1.0, 1.0)}
    assert second.steps[0].stats_ == {"x": (20.0, 10.0)}
    assert first.transform(pd.DataFrame({"x": [3.0]}))["x"].tolist() == [2.0]


def test_each_step_is_fitted_on_the_output_of_the_steps_before_it():
    double = FunctionStep(lambda frame: frame.assign(x2=frame["x"] * 2))
    fitted = Pipeline([double, StandardScale(["x2"])]).fit(pd.DataFrame({"x": [1.0, 3.0]}))
    assert fitted.steps[1].stats_ == {"x2": (4.0, 2.0)}


# ---- per-fold features ----------------------------------------------------------------------------

@pytest.fixture
def daily() -> pd.DataFrame:
    """Twenty days of a target ``y`` and a reading ``x``, indexed by time."""
    index = pd.date_range("2024-01-01", periods=20, freq="D", name="date")
    return pd.DataFrame({"x": np.arange(20, dtype=float) + 100, "y": np.arange(20, dtype=float) ** 2}, index=index)


def last_days(frame: pd.DataFrame, days: int) -> Fold:
    n = len(frame)
    return Fold(3, np.arange(n - days), np.arange(n - days, n), frame.index[n - days - 1])


def copy_target(frame: pd.DataFrame) -> pd.DataFrame:
    """A step that reads the target: what it sees ends up in ``seen``."""
    return frame.assign(seen=frame["y"])


def test_forecasting_hides_every_validation_value(daily):
    seen: list[pd.DataFrame] = []  # shared by the fitted copies: functions are not deep-copied

    def record(frame: pd.DataFrame) -> pd.DataFrame:
        seen.append(frame.copy())
        return frame

    fold_features(daily, last_days(daily, 5), Pipeline([FunctionStep(record)]), target="y", forecasting=True)
    (whole,) = [frame for frame in seen if len(frame) == len(daily)]
    assert whole.loc[daily.index[15:]].isna().all().all()
    pd.testing.assert_frame_equal(whole.loc[daily.index[:15]], daily.iloc[:15])


def test_forecasting_step_reading_the_target_sees_nan_in_the_window(daily):
    fold = last_days(daily, 5)
    step = FunctionStep(lambda frame: frame.assign(target_missing=frame["y"].isna()))
    data = fold_features(daily, fold, Pipeline([step]), target="y", forecasting=True)
    assert data.X_valid["target_missing"].tolist() == [True] * 5
    assert not data.X_train["target_missing"].any()
    pd.testing.assert_series_equal(data.y_valid, daily["y"].iloc[15:])


def test_forecasting_leaves_out_columns_unknown_in_the_window(daily):
    """Raw readings (and copies of the target) have no value at the cutoff; their lags do."""
    fold = last_days(daily, 5)
    pipeline = Pipeline([FunctionStep(copy_target), Lags(["x", "y"], [5])])
    data = fold_features(daily, fold, pipeline, target="y", forecasting=True)
    assert list(data.X_train.columns) == list(data.X_valid.columns) == ["x_lag5", "y_lag5"]
    np.testing.assert_array_equal(data.X_valid["y_lag5"], daily["y"].iloc[10:15])


def test_forecasting_keeps_declared_future_columns_in_the_window(daily):
    """A column known ahead (planned events) keeps its window values; the rest stays hidden."""
    seen: list[pd.DataFrame] = []

    def record(frame: pd.DataFrame) -> pd.DataFrame:
        seen.append(frame.copy())
        return frame.assign(seen=frame["y"])

    daily = daily.assign(z=np.arange(20, dtype=float) * 3)
    data = fold_features(daily, last_days(daily, 5), Pipeline([FunctionStep(record)]), target="y",
                         forecasting=True, future_columns=["x"])
    (whole,) = [frame for frame in seen if len(frame) == len(daily)]
    window = whole.loc[daily.index[15:]]
    pd.testing.assert_series_equal(window["x"], daily["x"].iloc[15:])
    assert window[["y", "z"]].isna().all().all()
    assert list(data.X_valid.columns) == list(data.X_train.columns) == ["x"]
    np.testing.assert_array_equal(data.X_valid["x"], daily["x"].iloc[15:])


def test_without_forecasting_validation_rows_are_visible(daily):
    frame = daily.reset_index(drop=True)
    fold = Fold(0, np.arange(0, 20, 2), np.arange(1, 20, 2))
    data = fold_features(frame, fold, Pipeline([FunctionStep(copy_target)]), target="y", forecasting=False)
    np.testing.assert_array_equal(data.X_valid["seen"], frame["y"].iloc[1::2])


def test_lag_features_of_validation_rows_come_from_before_the_cutoff(daily):
    fold = last_days(daily, 3)
    data = fold_features(daily, fold, Pipeline([Lags(["y"], [3])]), target="y", forecasting=True)
    np.testing.assert_array_equal(data.X_valid["y_lag3"], daily["y"].iloc[14:17])


def test_targets_are_raw_even_when_a_step_scales_the_target(daily):
    fold = last_days(daily, 5)
    data = fold_features(daily, fold, Pipeline([StandardScale(["y", "x"])]), target="y", forecasting=False)
    pd.testing.assert_series_equal(data.y_train, daily["y"].iloc[:15])
    pd.testing.assert_series_equal(data.y_valid, daily["y"].iloc[15:])
    assert "y" not in data.X_train.columns and "y" not in data.X_valid.columns


def test_steps_learn_from_training_rows_only(daily):
    fold = last_days(daily, 5)
    data = fold_features(daily, fold, Pipeline([StandardScale(["x"])]), target="y", forecasting=False)
    train_x = daily["x"].iloc[:15]
    expected = (daily["x"].iloc[15:] - train_x.mean()) / train_x.std(ddof=0)
    np.testing.assert_allclose(data.X_valid["x"], expected)


def test_parts_keep_their_rows_in_order(daily):
    frame = daily.reset_index(drop=True)
    fold = Fold(0, np.array([0, 1, 4, 5, 8, 9]), np.array([2, 3, 6, 7]))
    data = fold_features(frame, fold, Pipeline([StandardScale(["x"])]), target="y", forecasting=False)
    assert list(data.X_train.index) == list(data.y_train.index) == [0, 1, 4, 5, 8, 9]
    assert list(data.X_valid.index) == list(data.y_valid.index) == [2, 3, 6, 7]


def test_forecasting_training_leaves_out_warm_up_rows(daily):
    """The first rows have no lag yet; validation rows keep theirs from before the cutoff."""
    data = fold_features(daily, last_days(daily, 5), Pipeline([Lags(["y"], [3])]), target="y", forecasting=True)
    assert list(data.X_train.index) == list(data.y_train.index) == list(daily.index[3:15])
    assert list(data.X_valid.index) == list(daily.index[15:])
    pd.testing.assert_series_equal(data.y_train, daily["y"].iloc[3:15])


def test_dropped_training_rows_drop_their_targets_too(daily):
    frame = daily.reset_index(drop=True)
    fold = Fold(0, np.arange(15), np.arange(15, 20))
    pipeline = Pipeline([FunctionStep(lambda f: f.iloc[3:])])  # drops the first three (training) rows
    data = fold_features(frame, fold, pipeline, target="y", forecasting=False)
    assert list(data.X_train.index) == list(range(3, 15))
    pd.testing.assert_series_equal(data.y_train, frame["y"].iloc[3:15])


def test_dropping_validation_rows_is_an_error(daily):
    frame = daily.reset_index(drop=True)
    fold = Fold(2, np.arange(15), np.arange(15, 20))
    pipeline = Pipeline([FunctionStep(lambda f: f[f["x"] < 118])])  # drops rows 18 and 19
    message = ("the pipeline removed 2 of the 5 validation rows of fold 2; steps may drop training rows only")
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        fold_features(frame, fold, pipeline, target="y", forecasting=False)
