"""Reading a spec: YAML problems, schema problems, ``--set`` overrides, and where each problem points."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest

from raymlx._yaml import load_yaml
from raymlx.errors import Problem, SpecError, UserInputError
from raymlx.spec_io import load_spec

DATA = Path(__file__).resolve().parent / "data"
VALID = DATA / "specs" / "valid"
INVALID = DATA / "specs" / "invalid"


def relative(error: SpecError) -> list[str]:
    """The error's lines, with the invalid-spec folder left out of each file name."""
    return [str(p).replace(f"{INVALID}/", "") for p in error.problems]


def load_error(name: str, overrides: list[str] | None = None) -> SpecError:
    with pytest.raises(SpecError) as caught:
        load_spec(INVALID / f"{name}.yaml", overrides=overrides)
    return caught.value


INVALID_CASES = [
    # YAML itself
    pytest.param("yaml_syntax", [
        "yaml_syntax.yaml:7:7: invalid YAML: expected ',' or ']', but got ':' "
        "(while parsing a flow sequence started at line 6, column 12)"], id="yaml-syntax"),
    pytest.param("two_documents", [
        "two_documents.yaml:3:1: invalid YAML: expected a single document in the stream, "
        "but found another document"], id="two-documents"),
    pytest.param("duplicate_key", [
        "duplicate_key.yaml:6:1: task: duplicate key 'task' (first defined at line 2)"], id="duplicate-key"),
    pytest.param("duplicate_model_name", [
        "duplicate_model_name.yaml:11:3: models.rf: duplicate key 'rf' (first defined at line 7)"],
        id="duplicate-nested-key"),
    pytest.param("key_not_a_single_value", [
        "key_not_a_single_value.yaml:2:1: a key must be a single value, but got ['task', 'kind']"],
        id="key-not-single-value"),
    pytest.param("not_a_mapping", [
        "not_a_mapping.yaml:1:1: a spec must be a mapping of sections (name, task, data, models, ...), "
        "but got a list"], id="not-a-mapping"),
    pytest.param("empty", [
        "empty.yaml:1:1: the spec is empty; it needs at least name, task, data and models"], id="empty"),
    # required fields
    pytest.param("missing_name", ["missing_name.yaml:1:1: name: required field is missing"], id="missing-name"),
    pytest.param("missing_task", ["missing_task.yaml:1:1: task: required field is missing"], id="missing-task"),
    pytest.param("missing_target", [
        "missing_target.yaml:3:1: data.target: required field is missing"], id="missing-data-target"),
    pytest.param("missing_models", [
        "missing_models.yaml:1:1: models: required field is missing"], id="missing-models"),
    pytest.param("empty_models", ["empty_models.yaml:6:1: models: must not be empty, but got {}"], id="empty-models"),
    pytest.param("missing_param_bound", [
        "missing_param_bound.yaml:11:9: models.rf.search.space.max_depth.high: required field is missing"],
        id="missing-param-high"),
    # misspelt keys, at every depth
    pytest.param("unknown_top_level_key", [
        "unknown_top_level_key.yaml:6:1: validaton: unknown field 'validaton'; did you mean 'validation'?"],
        id="unknown-top-level-key"),
    pytest.param("unknown_data_key", [
        "unknown_data_key.yaml:6:3: data.time_colum: unknown field 'time_colum'; did you mean 'time_column'?"],
        id="unknown-data-key"),
    pytest.param("unknown_search_key", [
        "unknown_search_key.yaml:10:7: models.rf.search.num_sample: unknown field 'num_sample'; "
        "did you mean 'num_samples'?"], id="unknown-search-key"),
    pytest.param("unknown_space_param_key", [
        "unknown_space_param_key.yaml:11:58: models.rf.search.space.max_features.logg: unknown field 'logg'; "
        "did you mean 'log'?"], id="unknown-space-param-key"),
    pytest.param("unknown_key_named_like_tag", [
        "unknown_key_named_like_tag.yaml:14:11: models.rf.search.space.criterion.choice: unknown field 'choice'"],
        id="unknown-key-named-like-its-type"),
    pytest.param("unknown_step_key", [
        "unknown_step_key.yaml:9:7: pipelines.prep.0.param: unknown field 'param'; did you mean 'params'?"],
        id="unknown-step-key"),
    # fixed choices
    pytest.param("bad_task", [
        "bad_task.yaml:2:1: task: must be one of 'regression', 'classification' or 'forecasting', "
        "but got 'regresion'; did you mean 'regression'?"], id="bad-task"),
    pytest.param("bad_algorithm", [
        "bad_algorithm.yaml:10:7: models.rf.search.algorithm: must be one of 'optuna', 'random' or 'grid', "
        "but got 'optna'; did you mean 'optuna'?"], id="bad-algorithm"),
    pytest.param("bad_strategy", [
        "bad_strategy.yaml:7:3: validation.strategy: must be one of 'kfold', 'holdout', 'expanding_window' "
        "or 'sliding_window', but got 'k_fold'; did you mean 'kfold'?"], id="bad-strategy"),
    pytest.param("bad_metric_mode", [
        "bad_metric_mode.yaml:8:3: metric.mode: must be one of 'min' or 'max', but got 'minimum'; "
        "did you mean 'min'?"], id="bad-metric-mode"),
    # search parameters
    pytest.param("bad_param_type", [
        "bad_param_type.yaml:11:24: models.rf.search.space.max_features.type: must be one of 'float', 'int' "
        "or 'choice', but got 'flaot'; did you mean 'float'?"], id="bad-param-type"),
    pytest.param("missing_param_type", [
        "missing_param_type.yaml:11:9: models.rf.search.space.max_depth: a search parameter needs a 'type': "
        "float, int or choice"], id="missing-param-type"),
    pytest.param("param_not_mapping", [
        "param_not_mapping.yaml:11:9: models.rf.search.space.max_depth: a search parameter must be a mapping "
        "with a 'type': float, int or choice, but got 8"], id="param-not-mapping"),
    pytest.param("bound_not_finite", [
        "bound_not_finite.yaml:11:9: models.ridge.search.space.alpha: `low` and `high` must be finite numbers, "
        "but got (low=nan, high=10.0)"], id="bound-not-finite"),
    pytest.param("value_too_long", [
        "value_too_long.yaml:2:1: task: must be one of 'regression', 'classification' or 'forecasting', but got "
        "'" + "x" * 79 + "... (99922 more characters)"], id="long-value-shortened"),
    pytest.param("low_above_high", [
        "low_above_high.yaml:11:9: models.rf.search.space.max_depth: `low <= high` must hold, "
        "but got (low=16, high=2)"], id="low-above-high"),
    pytest.param("log_low_not_positive", [
        "log_low_not_positive.yaml:11:9: models.ridge.search.space.alpha: `low > 0` must hold for log=true, "
        "but got (low=0.0)"], id="log-low-not-positive"),
    pytest.param("log_with_step", [
        "log_with_step.yaml:11:9: models.ridge.search.space.alpha: `step` cannot be used with log=true, "
        "but got (step=0.1)"], id="log-with-step"),
    pytest.param("step_not_positive", [
        "step_not_positive.yaml:11:9: models.rf.search.space.max_depth: `step > 0` must hold, but got (step=0)"],
        id="step-not-positive"),
    pytest.param("empty_choice", [
        "empty_choice.yaml:11:35: models.rf.search.space.criterion.values: must not be empty, but got []"],
        id="empty-choice"),
    # values of the wrong type or out of range
    pytest.param("port_not_integer", [
        "port_not_integer.yaml:10:3: serve.port: must be an integer, but got 'abc'"], id="port-not-integer"),
    pytest.param("num_samples_zero", [
        "num_samples_zero.yaml:10:7: models.rf.search.num_samples: must be at least 1, but got 0"],
        id="num-samples-zero"),
    pytest.param("folds_zero", ["folds_zero.yaml:7:3: validation.folds: must be at least 1, but got 0"],
                 id="folds-zero"),
    pytest.param("section_not_mapping", [
        "section_not_mapping.yaml:3:1: data: must be a mapping, but got '../../tiny.csv'"], id="section-not-mapping"),
    pytest.param("replicas_min_above_max", [
        "replicas_min_above_max.yaml:10:3: serve.autoscaling: `min_replicas <= max_replicas` must hold, "
        "but got (min_replicas=4, max_replicas=2)"], id="min-replicas-above-max"),
    # every problem at once
    pytest.param("several_schema_errors", [
        "several_schema_errors.yaml:7:3: validation.folds: must be at least 1, but got 0",
        "several_schema_errors.yaml:12:7: models.rf.search.algorithm: must be one of 'optuna', 'random' or "
        "'grid', but got 'optna'; did you mean 'optuna'?",
        "several_schema_errors.yaml:14:9: models.rf.search.space.max_depth: `low <= high` must hold, "
        "but got (low=16, high=2)",
        "several_schema_errors.yaml:16:3: serve.port: must be an integer, but got 'abc'"], id="several-errors"),
]


@pytest.mark.parametrize(("name", "expected"), INVALID_CASES)
def test_invalid_spec_is_reported_with_file_line_column_and_path(name, expected):
    with pytest.raises(SpecError, match=re.escape(expected[0].partition(": ")[2])) as caught:
        load_spec(INVALID / f"{name}.yaml")
    assert relative(caught.value) == expected


def test_several_problems_are_all_in_the_message():
    error = load_error("several_schema_errors")
    lines = str(error).splitlines()
    assert len(lines) == 4
    assert lines == [str(p) for p in error.problems]
    for needle in ("validation.folds", "models.rf.search.algorithm", "models.rf.search.space.max_depth",
                   "serve.port"):
        assert sum(needle in line for line in lines) == 1, needle


def test_problem_names_the_absolute_spec_file():
    error = load_error("low_above_high")
    assert error.problems == [Problem(
        "models.rf.search.space.max_depth", "`low <= high` must hold, but got (low=16, high=2)",
        str(INVALID / "low_above_high.yaml"), 11, 9)]
    assert str(error).startswith(f"{INVALID}/low_above_high.yaml:11:9: ")


def test_problems_are_in_file_order_with_overrides_last():
    error = load_error("problems_out_of_order", ['name=""'])
    assert relative(error) == [
        "problems_out_of_order.yaml:2:3: serve.port: must be an integer, but got 'abc'",
        "problems_out_of_order.yaml:6:14: models.rf.search.num_samples: must be at least 1, but got 0",
        "problems_out_of_order.yaml:10:1: task: must be one of 'regression', 'classification' or "
        "'forecasting', but got 'regresion'; did you mean 'regression'?",
        "--set name=\"\": name: must not be empty, but got ''",
    ]


def test_spec_error_pickles_with_its_problems():
    error = load_error("several_schema_errors")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is SpecError
    assert copy.problems == error.problems
    assert str(copy) == str(error)


def test_missing_spec_file_is_a_user_error():
    missing = INVALID / "no_such_spec.yaml"
    with pytest.raises(UserInputError, match=re.escape(f"cannot read spec {missing}: No such file or directory")):
        load_spec(missing)


# Valid specs


@pytest.mark.parametrize("name", ["regression", "classification", "forecasting"])
def test_valid_spec_loads(name):
    loaded = load_spec(VALID / f"{name}.yaml")
    assert loaded.spec.task == name
    assert loaded.path == VALID / f"{name}.yaml"
    assert loaded.base_dir == str(VALID)
    assert loaded.overrides == {}


def test_valid_spec_keeps_what_it_says():
    spec = load_spec(VALID / "regression.yaml").spec
    assert spec.data.columns == ["x1", "x2"]
    assert [s.step for s in spec.pipelines["prep"]] == ["fill_missing", "standard_scale"]
    assert spec.models["rf"].search.space["max_depth"].high == 8
    assert spec.models["mean"].search.space["offset"].step == 0.5


# Positions


def test_positions_are_one_based():
    _, positions = load_yaml("name: x\nmodels:\n  rf: {model: m}\n", source="s.yaml")
    assert positions[()] == (1, 1)
    assert positions[("name",)] == (1, 1)
    assert positions[("models",)] == (2, 1)
    assert positions[("models", "rf")] == (3, 3)
    assert positions[("models", "rf", "model")] == (3, 8)


def test_syntax_error_on_the_first_character_is_line_1_column_1():
    with pytest.raises(SpecError) as caught:
        load_yaml("]\n", source="s.yaml")
    (problem,) = caught.value.problems
    assert (problem.source, problem.line, problem.column) == ("s.yaml", 1, 1)


def test_a_field_of_a_valid_spec_points_at_its_key():
    path = VALID / "regression.yaml"
    lines = path.read_text().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if "max_depth:" in text)
    column = lines[line - 1].index("max_depth") + 1
    problem = load_spec(path).problem(("models", "rf", "search", "space", "max_depth"), "too deep")
    assert (problem.line, problem.column) == (line, column)
    assert str(problem) == f"{path}:{line}:{column}: models.rf.search.space.max_depth: too deep"


# YAML merge keys (<<): shared sections are common in specs


MERGED = """\
name: shared
task: regression
data: {uri: tiny.csv, target: y}
shared: &shared
  algorithm: random
  num_samples: 4
models:
  a:
    model: m:A
    search:
      <<: *shared
      num_samples: 8
  b:
    model: m:B
    search: {<<: *shared}
"""


def test_merge_keys_are_expanded_and_keys_written_next_to_them_win(tmp_path):
    (tmp_path / "spec.yaml").write_text(MERGED)
    with pytest.raises(SpecError) as caught:  # the anchor's own section is unknown; no '<<' is left over
        load_spec(tmp_path / "spec.yaml")
    assert [str(p).removeprefix(f"{tmp_path}/") for p in caught.value.problems] == [
        "spec.yaml:4:1: shared: unknown field 'shared'"]
    data, positions = load_yaml(MERGED, source="s.yaml")
    assert data["models"]["a"]["search"] == {"algorithm": "random", "num_samples": 8}
    assert data["models"]["b"]["search"] == {"algorithm": "random", "num_samples": 4}
    assert positions[("models", "a", "search", "num_samples")] == (12, 7)
    assert positions[("models", "b", "search", "num_samples")] == (6, 3)  # where the shared value is written


def test_first_of_several_merged_mappings_wins():
    data, _ = load_yaml("a: &a {x: 1}\nb: &b {x: 2, y: 2}\nc: {<<: [*a, *b]}\n", source="s.yaml")
    assert data["c"] == {"x": 1, "y": 2}


def test_a_key_written_twice_next_to_a_merge_is_still_a_duplicate():
    with pytest.raises(SpecError, match=re.escape("s.yaml:4:3: c.x: duplicate key 'x' (first defined at line 3)")):
        load_yaml("a: &a {x: 1}\nc:\n  x: 2\n  x: 3\n  <<: *a\n", source="s.yaml")


def test_merging_a_scalar_is_an_error():
    with pytest.raises(SpecError, match=re.escape("s.yaml:2:7: c: '<<' merges a mapping or a list of mappings")):
        load_yaml("c:\n  <<: 5\n", source="s.yaml")


# --set overrides


def test_override_values_are_parsed_as_yaml():
    loaded = load_spec(VALID / "regression.yaml", overrides=[
        "data.columns=[x1]", "validation.shuffle=false", "models.rf.params={n_estimators: 5, max_depth: 3}",
        "tracking.experiment=exp=1"])
    spec = loaded.spec
    assert spec.data.columns == ["x1"]
    assert spec.validation.shuffle is False
    assert spec.models["rf"].params == {"n_estimators": 5, "max_depth": 3}
    assert spec.tracking.experiment == "exp=1"  # only the first '=' separates key and value
    assert loaded.overrides[("data", "columns")] == "data.columns=[x1]"


def test_override_indexes_into_a_list_and_keeps_its_other_items():
    spec = load_spec(VALID / "regression.yaml", overrides=["pipelines.prep.1.params={columns: [x1]}"]).spec
    assert [s.step for s in spec.pipelines["prep"]] == ["fill_missing", "standard_scale"]
    assert spec.pipelines["prep"][0].params == {"strategy": "median"}
    assert spec.pipelines["prep"][1].params == {"columns": ["x1"]}


OVERRIDE_CASES = [
    pytest.param("models.rf.search.num_samples=0",
                 "models.rf.search.num_samples: must be at least 1, but got 0", id="out-of-range"),
    pytest.param("name=2024", "name: must be a string, but got 2024", id="yaml-typed-value"),
    pytest.param("data.targt=y", "data.targt: unknown field 'targt'; did you mean 'target'?", id="new-misspelt-key"),
    pytest.param("pipelines.prep.0.stepp=fill_missing",
                 "pipelines.prep.0.stepp: unknown field 'stepp'; did you mean 'step'?", id="key-inside-list"),
    # The file has models.rf.search.space.max_depth too: the problem is the override's, not the file's line.
    pytest.param("models.rf.search.space={max_depth: {type: int, low: 9, high: 1}}",
                 "models.rf.search.space.max_depth: `low <= high` must hold, but got (low=9, high=1)",
                 id="replaced-section"),
]


@pytest.mark.parametrize(("override", "expected"), OVERRIDE_CASES)
def test_override_problem_is_attributed_to_the_override(override, expected):
    with pytest.raises(SpecError, match=re.escape(f"--set {override}: {expected}")) as caught:
        load_spec(VALID / "regression.yaml", overrides=[override])
    (problem,) = caught.value.problems
    assert problem.source == f"--set {override}"
    assert (problem.line, problem.column) == (None, None)
    assert str(problem) == f"--set {override}: {expected}"


BAD_OVERRIDES = [
    pytest.param("novalue", "--set novalue: expected key.path=value", id="no-equals"),
    pytest.param("=3", "--set =3: expected key.path=value", id="no-key"),
    pytest.param("models..rf=3", "--set models..rf=3: expected key.path=value", id="empty-key-part"),
    pytest.param("name=[x", "--set name=[x: value is not valid YAML", id="bad-yaml"),
    pytest.param("pipelines.prep.5.step=x",
                 "--set pipelines.prep.5.step=x: 'pipelines.prep' is a list of 2 items, "
                 "so '5' must be an index from 0 to 1", id="index-out-of-range"),
    pytest.param("pipelines.prep.first.step=x",
                 "--set pipelines.prep.first.step=x: 'pipelines.prep' is a list of 2 items, "
                 "so 'first' must be an index from 0 to 1", id="index-not-a-number"),
]


@pytest.mark.parametrize(("override", "expected"), BAD_OVERRIDES)
def test_malformed_override_is_a_user_error(override, expected):
    with pytest.raises(UserInputError, match=re.escape(expected)) as caught:
        load_spec(VALID / "regression.yaml", overrides=[override])
    assert type(caught.value) is UserInputError
