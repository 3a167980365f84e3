"""`raymlx report` rebuilds a session's report from MLflow alone; bad input exits 2."""

from __future__ import annotations

import re
import shutil
import tempfile
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from raymlx.cli import app
from raymlx.errors import UserInputError
from raymlx.report import LiveReport, load_report, report_after_tune
from raymlx.report._store import download, find_session, read_json
from raymlx.spec_io import load_spec
from tests.report.conftest import REGRESSION

runner = CliRunner()


def _tune_time_outline(session) -> dict:
    found = find_session(session.result.tracking_uri, session.loaded.spec.experiment_name, session.result.session_run_id)
    with tempfile.TemporaryDirectory() as folder:
        return read_json(download(found.client, found.run_id, ("report",), Path(folder)), "report/summary.json")


@pytest.mark.parametrize("task", ["regression", "forecasting"])
def test_report_rebuilds_the_same_sections_from_mlflow_alone(task, request, tmp_path):
    """Only the spec and the MLflow store: no data, no features, no refit."""
    session = request.getfixturevalue(task)
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(session.loaded.path, alone / "specs.yaml")
    shutil.copy(session.loaded.path.parent / "mlflow.db", alone / "mlflow.db")  # artifacts stay where the store says
    loaded = load_spec(alone / "specs.yaml")
    rebuilt = load_report(loaded, tracking_uri=f"sqlite:///{alone / 'mlflow.db'}")
    outline = _tune_time_outline(session)
    assert [s.name for s in rebuilt.sections] == outline["models"] == [r.model for r in session.result.leaderboard]
    assert [c.path for c in rebuilt.overview] == [c["path"] for c in outline["overview"]]
    assert rebuilt.summary["champion"] == session.result.champion
    original = session.html.read_text()
    for section in rebuilt.sections:
        assert section.charts and all(c.png.startswith(b"\x89PNG") for c in section.charts)
        assert f'id="model-{section.name}"' in original
    # The CLI writes the same document the run wrote (one session, same artifacts: byte for byte).
    result = runner.invoke(app, ["report", str(alone / "specs.yaml"), "-o", str(alone / "again.html")])
    assert result.exit_code == 0, result.output
    assert (alone / "again.html").read_text() == original


def test_report_names_a_session_by_its_run_id(regression, tmp_path):
    spec = regression.loaded.path
    result = runner.invoke(app, ["report", str(spec), "--run", regression.result.session_run_id,
                                 "-o", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output
    assert regression.result.session_run_id in (tmp_path / "r.html").read_text()


def test_report_of_a_spec_that_never_ran_exits_2(tmp_path):
    (tmp_path / "specs.yaml").write_text(textwrap.dedent(REGRESSION).replace("report-regression", "never-ran"))
    result = runner.invoke(app, ["report", str(tmp_path / "specs.yaml")])
    assert result.exit_code == 2
    assert "experiment 'never-ran' has no runs" in result.output and "the spec never ran" in result.output


@pytest.mark.parametrize("run_id, message", [
    pytest.param("0123456789abcdef0123456789abcdef", "no such run", id="unknown"),
    pytest.param("TRIAL", "not a session run of experiment 'report-regression' (a trial run)", id="trial-run"),
])
def test_report_of_an_unknown_or_wrong_run_exits_2(regression, run_id, message):
    if run_id == "TRIAL":
        from mlflow.tracking import MlflowClient

        client = MlflowClient(regression.result.tracking_uri)
        run_id = client.search_runs([regression.result.experiment_id], "tags.`raymlx.role` = 'trial'")[0].info.run_id
    result = runner.invoke(app, ["report", str(regression.loaded.path), "--run", run_id])
    assert result.exit_code == 2
    assert re.search(re.escape(f"--run {run_id}: {message}"), " ".join(result.output.split()))


def test_load_report_raises_user_input_error_for_a_spec_that_never_ran(tmp_path):
    (tmp_path / "specs.yaml").write_text(textwrap.dedent(REGRESSION))
    with pytest.raises(UserInputError, match="the spec never ran"):
        load_report(load_spec(tmp_path / "specs.yaml"), tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")


def test_a_spec_can_turn_the_report_off(tmp_path):
    (tmp_path / "specs.yaml").write_text(textwrap.dedent(REGRESSION))
    loaded = load_spec(tmp_path / "specs.yaml", overrides=["report.enabled=false"])
    assert report_after_tune(loaded, None, None) is None
    with LiveReport(loaded, None) as report:  # what `raymlx tune` and raymlx.tune run with: no hook, no report
        assert report.on_model_end is None and report.finish(None) is None
