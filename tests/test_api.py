"""The Python API: raymlx.validate, raymlx.tune and raymlx.load_champion on a real Ray runtime and sqlite store."""

from __future__ import annotations

import re
import shutil

import mlflow
from mlflow.tracking import MlflowClient
import numpy as np
import pytest

import raymlx
from raymlx.errors import SpecError
from tests.conftest import DIABETES

SPEC = """
name: api
task: regression
data: {uri: data/diabetes.csv, target: progression}
validation: {strategy: kfold, folds: 3}
models:
  ridge:
    model: sklearn.linear_model:Ridge
    search:
      num_samples: 2
      space:
        alpha: {type: float, low: 0.01, high: 100.0, log: true}
  tree:
    model: sklearn.tree:DecisionTreeRegressor
    params: {random_state: 0}
    search:
      num_samples: 2
      space:
        max_depth: {type: int, low: 1, high: 6}
"""


@pytest.fixture
def spec(tmp_path):
    (tmp_path / "data").mkdir()
    shutil.copy(DIABETES, tmp_path / "data" / "diabetes.csv")
    path = tmp_path / "specs.yaml"
    path.write_text(SPEC)
    return path


def test_validate_returns_the_data_and_takes_overrides_as_a_mapping(spec):
    frame = raymlx.validate(spec, overrides={"data.columns": ["age", "bmi"]})
    assert list(frame.columns) == ["age", "bmi", "progression"]
    assert len(frame) == 442


def test_validate_raises_the_spec_error_the_command_line_prints(spec):
    with pytest.raises(SpecError, match=re.escape("--set models.ridge.search.num_samples=0: "
                                                  "models.ridge.search.num_samples: must be at least 1")):
        raymlx.validate(spec, overrides=["models.ridge.search.num_samples=0"])


def test_tune_registers_a_champion_that_load_champion_returns_and_writes_the_report(ray_runtime, spec):
    result = raymlx.tune(spec, overrides={"models.tree.search.num_samples": 1, "report.shap_sample": 20})
    assert [row.trials for row in sorted(result.leaderboard, key=lambda r: r.model)] == [1, 2, 1]  # baseline, ridge, tree
    assert result.champion == result.leaderboard[0].model != "baseline"
    champion = raymlx.load_champion(spec)
    rows = raymlx.validate(spec).drop(columns="progression").head(5)
    mlflow.set_tracking_uri(result.tracking_uri)
    expected = mlflow.pyfunc.load_model(result.champion_uri).predict(rows)
    np.testing.assert_allclose(champion.predict(rows), expected)
    _assert_reported(result, spec.parent / "report.html")


def _assert_reported(result, html_file) -> None:
    """The report `raymlx tune` writes: beside the spec, on the session run, each model's section on its run."""
    html = html_file.read_text()
    client = MlflowClient(result.tracking_uri)
    assert "report.html" in {a.path for a in client.list_artifacts(result.session_run_id)}
    models = client.search_runs([result.experiment_id], "tags.`raymlx.role` = 'model'")
    assert {r.data.tags["raymlx.model"] for r in models} == {row.model for row in result.leaderboard}
    for run in models:
        assert f'id="model-{run.data.tags["raymlx.model"]}"' in html
        assert "report/section.json" in {a.path for a in client.list_artifacts(run.info.run_id, "report")}
