"""A session tracked on a real `mlflow server` gets its report, and `raymlx report` rebuilds it over HTTP."""

from __future__ import annotations

import textwrap

from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from raymlx.cli import app
from raymlx.report import load_report
from raymlx.spec_io import load_spec
from tests.report.conftest import project_with, run_with_report
from tests.test_remote_tracking import mlflow_server  # noqa: F401  (the real server fixture)

SPEC = """
name: remote-report
task: regression
data: {uri: data/diabetes.csv, target: progression}
validation: {folds: 3}
baseline: false
tracking: {uri: "http://127.0.0.1:PORT", experiment: remote-report, registered_model: remote-report}
models:
  ridge:
    model: sklearn.linear_model:Ridge
    search: {num_samples: 2, space: {alpha: {type: float, low: 0.1, high: 10.0, log: true}}}
report: {shap_sample: 30}
"""


def test_a_session_on_a_tracking_server_reports_and_rebuilds(ray_runtime, mlflow_server, tmp_path):  # noqa: F811
    uri, server_root = mlflow_server
    spec = project_with(tmp_path, SPEC.replace("http://127.0.0.1:PORT", uri))
    session = run_with_report(spec)
    assert not (tmp_path / "mlartifacts").exists()  # every chart went to the server
    assert any((server_root / "artifacts").rglob("shap_beeswarm.png"))
    client = MlflowClient(uri)
    assert "report.html" in [a.path for a in client.list_artifacts(session.result.session_run_id)]
    rebuilt = load_report(load_spec(spec), tracking_uri=uri)
    assert [s.name for s in rebuilt.sections] == ["ridge"]
    assert {c.path for c in rebuilt.sections[0].charts} >= {"plots/diagnostics/predicted_vs_actual.png",
                                                           "plots/explanations/shap_beeswarm.png"}
    result = CliRunner().invoke(app, ["report", str(spec), "-o", str(tmp_path / "again.html")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "again.html").read_text() == session.html.read_text()
