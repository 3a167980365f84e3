"""Sessions of each task, tuned on a real local Ray runtime into a sqlite MLflow store, with their reports."""

from __future__ import annotations

import shutil
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from raymlx.checks import validate
from raymlx.report import LiveReport, report_after_tune
from raymlx.report.live import PRIORITY_ENV
from raymlx.spec_io import LoadedSpec, load_spec
from raymlx.experiment import ExperimentResult, run_experiment
from tests.conftest import DIABETES, ROOT

REGRESSION = """
name: report-regression
task: regression
data: {uri: data/diabetes.csv, target: progression}
validation: {folds: 3}
baseline: false
pipelines:
  scaled: [{step: standard_scale}]
models:
  ridge:
    model: sklearn.linear_model:Ridge
    pipeline: scaled
    search: {num_samples: 3, space: {alpha: {type: float, low: 0.1, high: 10.0, log: true}}}
  forest:
    model: sklearn.ensemble:RandomForestRegressor
    params: {n_estimators: 20, random_state: 0, n_jobs: 1}
    search: {num_samples: 2, space: {max_depth: {type: int, low: 2, high: 6}}}
  knn:
    model: sklearn.neighbors:KNeighborsRegressor
    pipeline: scaled
    search: {algorithm: grid, space: {n_neighbors: {type: choice, values: [5, 15]}}}
report: {shap_sample: 60, time_budget_s: 5}
"""

CLASSIFICATION = """
name: report-classification
task: classification
data: {uri: data/iris.csv, target: species}
validation: {folds: 3}
baseline: false
metric: {name: accuracy}
models:
  logreg:
    model: sklearn.linear_model:LogisticRegression
    params: {max_iter: 300}
    search: {num_samples: 2, space: {C: {type: float, low: 0.1, high: 10.0, log: true}}}
  tree:
    model: sklearn.tree:DecisionTreeClassifier
    params: {random_state: 0}
    search: {algorithm: grid, space: {max_depth: {type: choice, values: [2, 4]}}}
report: {shap_sample: 40, time_budget_s: 5}
"""

FORECAST_MODELS = ("seasonal_naive", "ridge", "prophet", "exponential_smoothing")


@pytest.fixture(scope="session", autouse=True)
def lowest_priority_until_tune_ends():
    """The report's processes keep the lowest priority until Tune ends, however busy the machine (the other xdist
    worker's trials count as other work): test_live.py checks it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(PRIORITY_ENV, "lowest")
        yield


@dataclass
class Session:
    """A tuned session with its report: the spec, the data, what tune returned, the HTML written and when each
    model's section was handed to a report process (``time.time()``; empty when drawn after the run)."""

    loaded: LoadedSpec
    frame: pd.DataFrame
    result: ExperimentResult
    html: Path
    submitted: dict[str, float]


def run_with_report(spec: Path, overrides: list[str] | None = None, *, live: bool = True) -> Session:
    """Tune and report as ``raymlx tune`` does (``live``: sections drawn as models end), or report after the run."""
    loaded = load_spec(spec, overrides=overrides)
    frame = validate(loaded)
    if not live:
        result = run_experiment(loaded, frame)
        return Session(loaded, frame, result, report_after_tune(loaded, frame, result), {})
    with LiveReport(loaded, frame) as report:
        result = run_experiment(loaded, frame, on_model_end=report.on_model_end)
        html = report.finish(result)
    assert html is not None
    return Session(loaded, frame, result, html, dict(report.submitted))


def project_with(root: Path, spec: str) -> Path:
    (root / "data").mkdir(exist_ok=True)
    shutil.copy(DIABETES, root / "data" / "diabetes.csv")
    from sklearn.datasets import load_iris

    iris = load_iris(as_frame=True)
    iris.frame.assign(species=iris.target_names[iris.target]).drop(columns="target").to_csv(
        root / "data" / "iris.csv", index=False)
    (root / "specs.yaml").write_text(textwrap.dedent(spec))
    return root / "specs.yaml"


@pytest.fixture(scope="session")
def regression(ray_runtime, tmp_path_factory) -> Session:
    return run_with_report(project_with(tmp_path_factory.mktemp("regression"), REGRESSION))


@pytest.fixture(scope="session")
def classification(ray_runtime, tmp_path_factory) -> Session:
    # drawn after the run, as `raymlx report`'s fallback does for a resumed session's models
    return run_with_report(project_with(tmp_path_factory.mktemp("classification"), CLASSIFICATION), live=False)


@pytest.fixture(scope="session")
def forecasting(ray_runtime, tmp_path_factory) -> Session:
    """The temperature example, four families (baseline, regressor on lags, Prophet, exponential smoothing), few trials."""
    root = tmp_path_factory.mktemp("forecasting")
    shutil.copytree(ROOT / "examples" / "temperature", root, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("mlflow.db", "mlartifacts", ".raymlx", "report.html"))
    import yaml

    document = yaml.safe_load((root / "specs.yaml").read_text())
    document["models"] = {name: document["models"][name] for name in FORECAST_MODELS}
    (root / "specs.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    overrides = ["models.ridge.search.num_samples=2", "models.prophet.search.num_samples=2",
                 "models.exponential_smoothing.search.space.trend.values=[additive]",
                 "report.time_budget_s=5"]
    return run_with_report(root / "specs.yaml", overrides)
