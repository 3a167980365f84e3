"""Rules across spec sections and against the code and data a spec names."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pandas as pd
import pytest

from raymlx.checks import validate
from raymlx.errors import SpecError
from raymlx.spec_io import load_spec

DATA = Path(__file__).resolve().parent / "data"
VALID = DATA / "specs" / "valid"
INVALID = DATA / "specs" / "invalid"


def relative(error: SpecError) -> list[str]:
    """The error's lines, with absolute folders replaced by short names."""
    return [str(p).replace(f"{INVALID}/", "").replace(str(INVALID), "<invalid>").replace(str(DATA), "<data>")
            for p in error.problems]


def validate_error(path: Path, overrides: list[str] | None = None) -> SpecError:
    loaded = load_spec(path, overrides=overrides)  # the schema is fine: only the checks may fail
    with pytest.raises(SpecError) as caught:
        validate(loaded)
    return caught.value


CASES = [
    # leakage
    pytest.param("forecasting_leaking_lag", [
        "forecasting_leaking_lag.yaml:14:7: pipelines.lagged.0.params: lag 1 is shorter than the horizon 4: "
        "the feature would use values not yet known at the forecast cutoff; use lags >= 4",
        "forecasting_leaking_lag.yaml:16:7: pipelines.lagged.1.params: shift 2 is shorter than the horizon 4: "
        "the feature would use values not yet known at the forecast cutoff; use shift >= 4"],
        id="lag-shorter-than-horizon-leaks"),
    # task
    pytest.param("sliding_window_without_window", [
        "sliding_window_without_window.yaml:6:1: validation: sliding_window needs 'window' "
        "(training rows before each cutoff)"], id="sliding-window-needs-window"),
    pytest.param("forecasting_without_time_and_horizon", [
        "forecasting_without_time_and_horizon.yaml:3:1: data: forecasting needs 'time_column'",
        "forecasting_without_time_and_horizon.yaml:1:1: validation: forecasting needs 'horizon' "
        "(rows predicted after each cutoff)"], id="forecasting-needs-time-column-and-horizon"),
    pytest.param("forecasting_with_kfold", [
        "forecasting_with_kfold.yaml:8:3: validation.strategy: forecasting needs expanding_window or "
        "sliding_window, but got 'kfold'"], id="forecasting-with-kfold"),
    pytest.param("future_columns_not_forecasting", [
        "future_columns_not_forecasting.yaml:7:3: data.future_columns: future_columns are for forecasting only, "
        "but the task is 'regression'"], id="future-columns-need-forecasting"),
    pytest.param("future_columns_with_target", [
        "future_columns_with_target.yaml:7:24: data.future_columns.1: future_columns must not hold the target 'y': "
        "a future column is an input known over the forecast window"], id="future-columns-without-target"),
    pytest.param("future_columns_with_time", [
        "future_columns_with_time.yaml:7:20: data.future_columns.0: future_columns must not hold the time column "
        "'date': a future column is an input known over the forecast window"], id="future-columns-without-time"),
    # metric
    pytest.param("metric_wrong_task", [
        "metric_wrong_task.yaml:7:3: metric.name: metric 'rmse' does not fit task 'classification'"],
        id="metric-does-not-fit-task"),
    pytest.param("metric_unknown", [
        "metric_unknown.yaml:7:3: metric.name: unknown metric 'rmes'; did you mean 'rmse'?"], id="unknown-metric"),
    pytest.param("metric_custom_without_mode", [
        "metric_custom_without_mode.yaml:6:1: metric: a metric of your own needs 'mode: min' or 'mode: max'"],
        id="custom-metric-without-mode"),
    # pipelines
    pytest.param("unknown_pipeline", [
        "unknown_pipeline.yaml:12:5: models.rf.pipeline: unknown pipeline 'prepp'; did you mean 'prep'?"],
        id="unknown-pipeline"),
    pytest.param("pipeline_cycle", [
        "pipeline_cycle.yaml:7:3: pipelines.clean: pipelines refer to each other in a cycle: clean -> scale -> clean"],
        id="pipeline-cycle"),
    # references
    pytest.param("model_bad_module", [
        "model_bad_module.yaml:8:5: models.rf.model: no module named 'sklearn.ensembel'; "
        "did you mean 'sklearn.ensemble'?"], id="model-module-does-not-import"),
    pytest.param("model_bad_attribute", [
        "model_bad_attribute.yaml:8:5: models.rf.model: 'sklearn.ensemble' has no attribute 'RandomForestRegresor'; "
        "did you mean 'RandomForestRegressor'?"], id="model-attribute-missing"),
    pytest.param("model_missing_file", [
        "model_missing_file.yaml:8:5: models.mine.model: file '../../no_such_code.py' not found "
        "(looked in <invalid>)"], id="model-file-missing"),
    pytest.param("model_bad_file_attribute", [
        "model_bad_file_attribute.yaml:8:5: models.mine.model: '../../user_code.py' has no attribute "
        "'MeanRegresor'; did you mean 'MeanRegressor'?"], id="model-file-attribute-missing"),
    pytest.param("model_unknown_builtin", [
        "model_unknown_builtin.yaml:8:5: models.rf.model: 'sklearn.ensemble.RandomForestRegressor' is not a "
        "reference; write module:attr or file.py:attr"], id="model-dotted-without-colon"),
    pytest.param("step_bad_reference", [
        "step_bad_reference.yaml:9:7: pipelines.prep.1.step: '../../user_code.py' has no attribute 'add_on'; "
        "did you mean 'add_one'?"], id="step-does-not-import"),
    pytest.param("step_unknown_builtin", [
        "step_unknown_builtin.yaml:8:7: pipelines.prep.0.step: unknown built-in step 'standard_scal'; "
        "did you mean 'standard_scale'?"], id="unknown-built-in-step"),
    pytest.param("step_is_a_model", [
        "step_is_a_model.yaml:8:7: pipelines.prep.0.step: 'sklearn.linear_model:Ridge' is a model, not a step; "
        "a step is a class with fit(frame) and transform(frame), or a function f(frame, **params) -> frame "
        "(name models under models:)"], id="model-used-as-step"),
    pytest.param("step_column_misspelt", [
        "step_column_misspelt.yaml:9:16: pipelines.prep.0.params.columns: column 'x22' is not in the data when "
        "this step runs; did you mean 'x2'? (columns: date, x1, x2, y, label)"], id="step-column-misspelt"),
    pytest.param("step_fails_on_data", [
        "step_fails_on_data.yaml:8:7: pipelines.prep.0: step '../../user_code.py:add_one' failed on the data: "
        'TypeError: can only concatenate str (not "int") to str'], id="step-fails-on-the-data"),
    # search
    pytest.param("space_name_not_parameter", [
        "space_name_not_parameter.yaml:11:9: models.rf.search.space.max_dept: "
        "'sklearn.ensemble:RandomForestRegressor' has no parameter 'max_dept'; did you mean 'max_depth'?"],
        id="space-name-not-a-parameter"),
    pytest.param("params_name_not_accepted", [
        "params_name_not_accepted.yaml:11:7: models.mine.params.ofset: '../../user_code.py:MeanRegressor' "
        "has no parameter 'ofset'; did you mean 'offset'?"], id="fixed-param-not-accepted"),
    pytest.param("grid_continuous_float", [
        "grid_continuous_float.yaml:12:9: models.ridge.search.space.alpha: grid search cannot enumerate float "
        "parameter 'alpha': give it a step or use choice values"], id="grid-over-continuous-float"),
    # data
    pytest.param("data_file_missing", [
        "data_file_missing.yaml:4:3: data.uri: data file not found: <data>/no_such_file.csv"], id="data-file-missing"),
    pytest.param("target_column_missing", [
        "target_column_missing.yaml:5:3: data.target: column 'lable' not in the data; did you mean 'label'? "
        "(columns: date, x1, x2, y, label)"], id="target-column-missing"),
    pytest.param("time_column_missing", [
        "time_column_missing.yaml:6:3: data.time_column: column 'day' not in the data "
        "(columns: date, x1, x2, y, label)"], id="time-column-missing"),
    pytest.param("future_column_missing", [
        "future_column_missing.yaml:8:20: data.future_columns.0: column 'x3' not in the data "
        "(columns: date, x1, x2, y, label)"], id="future-column-missing"),
    pytest.param("text_among_numbers", [
        "text_among_numbers.yaml:4:3: data.uri: column 'x1' holds numbers but also 'abc' at line 18 of "
        "<data>/text_in_numbers.csv (1 such value); fix it, or leave the cell empty for a missing value"],
        id="text-among-numbers"),
    pytest.param("time_column_bad_date", [
        "time_column_bad_date.yaml:3:1: data: <data>/bad_date.csv: time column 'date' does not parse as dates: "
        "'2024-13-45' at line 10"], id="bad-date-names-its-line"),
    pytest.param("too_few_rows", [
        "too_few_rows.yaml:7:1: validation: 36 rows are too few for 6 folds of horizon 6: need more than 36"],
        id="too-few-rows-for-windows"),
    pytest.param("too_few_rows_kfold", [
        "too_few_rows_kfold.yaml:6:1: validation: 36 rows are too few for 40 folds"], id="too-few-rows-for-kfold"),
    # every problem at once
    pytest.param("several_check_errors", [
        "several_check_errors.yaml:5:3: data.target: column 'lable' not in the data; did you mean 'label'? "
        "(columns: date, x1, x2, y, label)",
        "several_check_errors.yaml:7:3: metric.name: metric 'rmse' does not fit task 'classification'",
        "several_check_errors.yaml:11:5: models.rf.pipeline: unknown pipeline 'prepp'",
        "several_check_errors.yaml:14:9: models.rf.search.space.max_dept: 'sklearn.ensemble:RandomForestClassifier' "
        "has no parameter 'max_dept'; did you mean 'max_depth'?",
        "several_check_errors.yaml:16:5: models.mine.model: file '../../no_such_code.py' not found "
        "(looked in <invalid>)"], id="several-errors"),
]


@pytest.mark.parametrize(("name", "expected"), CASES)
def test_check_failure_is_reported_with_file_line_column_and_path(name, expected):
    loaded = load_spec(INVALID / f"{name}.yaml")
    with pytest.raises(SpecError, match=re.escape(expected[0].replace("<invalid>", str(INVALID))
                                                  .replace("<data>", str(DATA)).partition(": ")[2])) as caught:
        validate(loaded)
    # Checks report in the order they run; what matters is that each problem is there, once.
    assert sorted(relative(caught.value)) == sorted(expected)


def test_several_check_failures_are_in_one_message():
    error = validate_error(INVALID / "several_check_errors.yaml")
    message = str(error)
    assert len(message.splitlines()) == 5
    for needle in ("data.target: column 'lable'", "metric.name: metric 'rmse'", "models.rf.pipeline: unknown",
                   "models.rf.search.space.max_dept:", "models.mine.model: file '../../no_such_code.py'"):
        assert message.count(needle) == 1, needle


def test_check_error_pickles_with_its_problems():
    error = validate_error(INVALID / "several_check_errors.yaml")
    copy = pickle.loads(pickle.dumps(error))
    assert copy.problems == error.problems
    assert str(copy) == str(error)


def test_without_reading_data_the_data_checks_are_skipped():
    loaded = load_spec(INVALID / "data_file_missing.yaml")
    assert validate(loaded, read_data=False) is None


OVERRIDE_CASES = [
    pytest.param("metric.name=accuracy", "metric.name: metric 'accuracy' does not fit task 'regression'",
                 id="metric"),
    pytest.param("models.rf.search.space.max_dept={type: int, low: 1, high: 3}",
                 "models.rf.search.space.max_dept: 'sklearn.ensemble:RandomForestRegressor' has no parameter "
                 "'max_dept'; did you mean 'max_depth'?", id="inside-the-value"),
    pytest.param("data.target=yy", "data.target: column 'yy' not in the data; did you mean 'y'? "
                 "(columns: date, x1, x2, y, label)", id="data-column"),
]


@pytest.mark.parametrize(("override", "expected"), OVERRIDE_CASES)
def test_check_failure_from_an_override_is_attributed_to_it(override, expected):
    error = validate_error(VALID / "regression.yaml", [override])
    assert relative(error) == [f"--set {override}: {expected}"]
    assert (error.problems[0].line, error.problems[0].column) == (None, None)


def test_check_failure_beside_an_override_points_at_the_file():
    error = validate_error(VALID / "regression.yaml", ["validation.folds=40"])
    line = VALID.joinpath("regression.yaml").read_text().splitlines().index("validation:") + 1
    assert [str(p) for p in error.problems] == [
        f"{VALID}/regression.yaml:{line}:1: validation: 36 rows are too few for 40 folds"]


# Valid specs


@pytest.mark.parametrize("name", ["regression", "classification", "forecasting"])
def test_valid_spec_passes_every_check(name):
    frame = validate(load_spec(VALID / f"{name}.yaml"))
    assert len(frame) == 36


def test_forecasting_frame_is_indexed_by_time():
    frame = validate(load_spec(VALID / "forecasting.yaml"))
    assert isinstance(frame.index, pd.DatetimeIndex)
    assert frame.index.is_monotonic_increasing
    assert list(frame.columns) == ["x1", "y"]
