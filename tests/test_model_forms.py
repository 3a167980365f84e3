"""The forms a model reference takes (estimator class, Darts class, train function, factory) and the families
``validate`` turns away before any trial runs."""

from __future__ import annotations

import inspect
import re
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from raymlx.checks import validate
from raymlx.cli import app
from raymlx.errors import SpecError
from raymlx.models.base import FORMS, NotAModel, build_model, model_kind, parameter_names, seed_parameter
from raymlx.spec_io import load_spec

USER = '''
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

def make_knn(n_neighbors=5):
    return make_pipeline(StandardScaler(), KNeighborsRegressor(n_neighbors))

def make_knn_classifier(n_neighbors=5):
    return make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors))

def train_knn(X, y, n_neighbors=5):
    return KNeighborsRegressor(n_neighbors).fit(X, y)

THREE = 3
'''


@pytest.fixture(autouse=True)
def _fresh_user_module():
    """Each test writes its own user_forms.py: forget the last one's."""
    yield
    sys.modules.pop("user_forms", None)


def _spec(tmp_path: Path, task: str, models: dict[str, str], extra: str = "") -> Path:
    rows = 40
    frame = pd.DataFrame({"x": np.arange(rows, dtype=float), "y": np.arange(rows) % 2,
                          "t": pd.date_range("2024-01-01", periods=rows, freq="D")})
    frame.to_csv(tmp_path / "data.csv", index=False)
    (tmp_path / "sub").mkdir(exist_ok=True)
    (tmp_path / "sub" / "user_forms.py").write_text(USER)
    lines = "\n".join(f"  {name}: {{model: '{ref}'}}" for name, ref in models.items())
    data = "{uri: data.csv, target: y, time_column: t}" if task == "forecasting" else "{uri: data.csv, target: y, columns: [x]}"
    validation = "{horizon: 3, folds: 2}" if task == "forecasting" else "{folds: 2}"
    path = tmp_path / "specs.yaml"
    path.write_text(f"name: forms\ntask: {task}\ndata: {data}\nvalidation: {validation}\n{extra}models:\n{lines}\n")
    return path


def _problems(path: Path) -> list[str]:
    with pytest.raises(SpecError) as caught:
        validate(load_spec(path))
    return [p.message for p in caught.value.problems]


def test_factory_parameters_are_its_own_and_a_train_functions_skip_x_and_y(tmp_path):
    path = _spec(tmp_path, "regression", {"f": "sub/user_forms.py:make_knn", "t": "sub/user_forms.py:train_knn"})
    text = path.read_text().replace("{model: 'sub/user_forms.py:make_knn'}",
                                    "{model: 'sub/user_forms.py:make_knn', params: {n_neighbors: 3}}")
    path.write_text(text.replace("{model: 'sub/user_forms.py:train_knn'}",
                                 "{model: 'sub/user_forms.py:train_knn', params: {n_neigbors: 3}}"))
    assert _problems(path) == ["'sub/user_forms.py:train_knn' has no parameter 'n_neigbors'; did you mean 'n_neighbors'?"]


def test_a_classifier_in_a_regression_spec_is_a_validate_error_naming_the_regressor(tmp_path):
    path = _spec(tmp_path, "regression", {"rf": "sklearn.ensemble:RandomForestClassifier",
                                          "knn": "sub/user_forms.py:make_knn_classifier"})
    with pytest.raises(SpecError, match=re.escape(
            "models.rf.model: 'sklearn.ensemble:RandomForestClassifier' is a classifier, but the task is regression; "
            "use a regressor such as sklearn.ensemble:RandomForestRegressor")):
        validate(load_spec(path))
    assert "'sub/user_forms.py:make_knn_classifier' is a factory of a classifier, but the task is regression; " \
           "use a regressor" in _problems(path)


def test_a_regressor_in_a_classification_spec_and_forecasters_in_a_tabular_spec_exit_2(tmp_path):
    path = _spec(tmp_path, "classification", {"ridge": "sklearn.linear_model:Ridge", "naive": "NaiveSeasonal",
                                              "es": "darts.models:ExponentialSmoothing"})
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert "models.ridge.model: 'sklearn.linear_model:Ridge' is a regressor, but the task is classification; " \
           "use a classifier" in result.stderr
    assert "models.naive.model: 'NaiveSeasonal' forecasts the target from its own past and serves task: " \
           "forecasting only; for classification name a scikit-learn estimator" in result.stderr
    assert "models.es.model: 'darts.models:ExponentialSmoothing' is a Darts forecasting model: it fits a series, " \
           "not rows, so it serves task: forecasting only" in result.stderr


def test_darts_classes_a_spec_cannot_express_and_callables_of_no_form_are_named(tmp_path):
    path = _spec(tmp_path, "forecasting", {"varima": "darts.models:VARIMA", "ens": "darts.models:NaiveEnsembleModel",
                                           "three": "sub/user_forms.py:THREE", "es": "darts.models:ExponentialSmoothing",
                                           "scaler": "sklearn.preprocessing:StandardScaler"})
    assert _problems(path) == [
        "'darts.models:VARIMA' forecasts several series together, but raymlx forecasts one target; "
        "try darts.models:ARIMA",
        "'darts.models:NaiveEnsembleModel' combines other model objects, which a spec cannot name; "
        "list each model as its own entry",
        f"'sub/user_forms.py:THREE' is not a model (its type is int); a model is {FORMS}",
        f"'sklearn.preprocessing:StandardScaler' is a class without fit and predict; a model is {FORMS}",
    ]


def test_every_darts_forecasting_model_class_goes_through_the_darts_adapter():
    import darts.models
    from darts.models.forecasting.forecasting_model import ForecastingModel

    from raymlx.models.darts import DartsModel

    classes = [c for c in (getattr(darts.models, n) for n in dir(darts.models))
               if inspect.isclass(c) and issubclass(c, ForecastingModel) and not inspect.isabstract(c)]
    assert len(classes) > 15
    for cls in classes:
        assert model_kind(cls) == "darts", cls
        built = build_model(cls, {})
        assert isinstance(built, DartsModel) and built.model is cls


def test_the_rule_telling_train_functions_from_factories():
    def train(X, y, alpha=1.0): ...
    def train_kw(X, y, *, alpha): ...
    def make(alpha=1.0): ...
    def make_kw(*, alpha): ...
    def make_one(alpha): ...
    assert [model_kind(f) for f in (train, train_kw, make, make_kw, make_one)] == \
           ["train", "train", "factory", "factory", "factory"]
    assert parameter_names(train) == {"alpha"} and parameter_names(make_one) == {"alpha"}
    with pytest.raises(NotAModel, match=re.escape("factory 'make' must return an unfitted estimator with fit and predict, "
                                                  "got NoneType")):
        build_model(make, {})


def test_the_seed_parameter_of_each_form():
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.linear_model import LinearRegression

    from darts.models import ExponentialSmoothing

    def make(n=1, random_state=None): ...
    def train(X, y, seed=0): ...
    def any_kwargs(**params): ...
    assert [seed_parameter(o) for o in (RandomForestRegressor, LinearRegression, make, train, any_kwargs,
                                        ExponentialSmoothing)] == \
           ["random_state", None, "random_state", "seed", None, "random_state"]


def test_a_factory_reference_validates_from_a_subfolder(tmp_path):
    path = _spec(tmp_path, "regression", {"f": "sub/user_forms.py:make_knn"})
    path.write_text(path.read_text().replace("{model: 'sub/user_forms.py:make_knn'}", textwrap.dedent(
        "{model: 'sub/user_forms.py:make_knn', search: {space: {n_neighbors: {type: int, low: 1, high: 5}}}}")))
    assert len(validate(load_spec(path))) == 40


def test_a_bare_scikit_learn_class_name_gets_its_full_reference_suggested(tmp_path):
    path = _spec(tmp_path, "regression", {"rf": "RandomForestRegressor"})
    assert _problems(path) == ["unknown built-in model 'RandomForestRegressor'; "
                               "did you mean 'sklearn.ensemble:RandomForestRegressor'?"]


def test_a_regressor_without_a_pipeline_in_a_forecasting_spec_is_told_it_gets_no_features(tmp_path):
    path = _spec(tmp_path, "forecasting", {"ridge": "sklearn.linear_model:Ridge", "naive": "NaiveSeasonal"})
    assert _problems(path) == [
        "'sklearn.linear_model:Ridge' learns from feature columns, but without a pipeline it gets none (no column "
        "is known at the forecast cutoff); give it a pipeline of lags (see the lags, rolling and calendar steps) "
        "or use a forecaster (NaiveSeasonal, darts.models:ExponentialSmoothing)"]
