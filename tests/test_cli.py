"""The command line: exit codes, where output goes, and a real tune run on the shared Ray runtime."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from raymlx.cli import app
from tests.conftest import ROOT
from tests.test_cluster import _kill_cluster, _uses

runner = CliRunner()

SMALL = """
name: cli-small
task: regression
data: {uri: data/diabetes.csv, target: progression}
validation: {folds: 3}
models:
  ridge:
    model: sklearn.linear_model:Ridge
    search:
      num_samples: 3
      space:
        alpha: {type: float, low: 0.01, high: 10.0, log: true}
  lasso:
    model: sklearn.linear_model:Lasso
    search:
      num_samples: 2
      space:
        alpha: {type: float, low: 0.01, high: 10.0, log: true}
"""


@pytest.fixture
def small_spec(project: Path) -> Path:
    path = project / "specs.yaml"
    path.write_text(textwrap.dedent(SMALL))
    return path


def test_validate_a_good_spec_exits_0(small_spec):
    result = runner.invoke(app, ["validate", str(small_spec)])
    assert result.exit_code == 0, result.output
    assert "valid (2 models, 442 rows)" in result.stdout


def test_validate_a_bad_spec_exits_2_with_one_compact_message(small_spec):
    small_spec.write_text(small_spec.read_text().replace("num_samples: 3", "num_sample: 3"))
    process = subprocess.run([sys.executable, "-m", "raymlx.cli", "validate", str(small_spec)],
                             capture_output=True, text=True, timeout=120)
    assert process.returncode == 2
    assert process.stdout == ""
    assert f"{small_spec}:10:7: models.ridge.search.num_sample: unknown field 'num_sample'; " \
           "did you mean 'num_samples'?" in process.stderr
    assert "Traceback" not in process.stderr


def test_debug_shows_the_traceback(small_spec):
    small_spec.write_text(small_spec.read_text().replace("Ridge", "Ridgee"))
    result = runner.invoke(app, ["--debug", "validate", str(small_spec)])
    assert result.exit_code != 0 and result.exception is not None
    assert "did you mean 'Ridge'?" in str(result.exception)


def test_set_override_reaches_validation(small_spec):
    result = runner.invoke(app, ["validate", str(small_spec), "--set", "validation.folds=0"])
    assert result.exit_code == 2
    assert "--set validation.folds=0: validation.folds: must be at least 1, but got 0" in result.stderr


def test_missing_spec_file_exits_2(tmp_path):
    result = runner.invoke(app, ["validate", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "cannot read spec" in result.stderr


def test_committed_schema_matches_the_spec_models():
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    committed = json.loads((ROOT / "specs" / "raymlx.schema.json").read_text())
    assert json.loads(result.stdout) == committed, "run: raymlx schema -o specs/raymlx.schema.json"


def test_tune_prints_leaderboard_to_stdout_and_registers(ray_runtime, small_spec):
    result = runner.invoke(app, ["tune", str(small_spec), "--set", "models.lasso.search.num_samples=1"])
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    ranked = [line for line in lines if "│ ridge" in line or "│ lasso" in line]
    assert len(ranked) == 2
    assert "champion:" in result.stdout and "models:/cli-small@champion (version 1)" in result.stdout
    assert f"report: {small_spec.parent / 'report.html'}" in " ".join(result.stdout.split())  # written at the end
    assert 'id="model-lasso"' in (small_spec.parent / "report.html").read_text()
    # ridge 3, lasso 1 (from --set) and the baseline 1; not a terminal: one summary line, no live table
    assert "tuned 2 models and the baseline: 5 trials, 0 failed" in result.stderr and "┃" not in result.stderr


def test_tune_warns_on_stderr_when_no_model_beats_the_baseline(ray_runtime, project):
    spec = project / "specs.yaml"
    spec.write_text(SMALL.split("models:")[0] + "models:\n  zero: {model: sklearn.dummy:DummyRegressor, "
                    "params: {strategy: constant, constant: 0}}\n")
    result = runner.invoke(app, ["tune", str(spec)])
    assert result.exit_code == 0, result.stderr
    assert "warning: no model beats the baseline ('baseline' row)" in result.stderr
    assert "champion: zero registered" in result.stdout


def test_tune_output_in_one_file_reads_line_by_line(small_spec):
    """stdout and stderr into one file, as in a CI log: the leaderboard title on its own line, one progress summary,
    no live redraws and no MLflow registry chatter."""
    temp = tempfile.mkdtemp(prefix="rmxo", dir="/tmp")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    log = small_spec.parent / "tune.log"
    try:
        with log.open("w") as both:
            process = subprocess.run([sys.executable, "-m", "raymlx.cli", "tune", str(small_spec),
                                      "--set", "runtime.num_cpus=1"], stdout=both, stderr=both, text=True,
                                     timeout=300, env={**env, "RAY_TMPDIR": temp}, cwd=temp)
        text = log.read_text()
        assert process.returncode == 0, text[-3000:]
        lines = text.splitlines()
        assert [line for line in lines if line.startswith("leaderboard (rmse, 3 folds)")], text
        assert len([line for line in lines if line.startswith("tuned ")]) == 1, text
        assert "leaderboard" not in " ".join(line for line in lines if not line.startswith("leaderboard")), text
        for chatter in ("Successfully registered", "Created version", "already exists", "\r", "\x1b["):
            assert chatter not in text, text
        champion = next(i for i, line in enumerate(lines) if line.startswith("champion: "))
        assert lines[champion].startswith("champion: ridge registered as models:/cli-small@champion (version 1)")
        assert lines[champion + 1] == "promoted: first champion", text
        assert lines[champion + 2].startswith("runs: mlflow ui --backend-store-uri sqlite:///") and \
            lines[champion + 2].endswith("?workflowType=machine_learning"), text
    finally:
        _kill_cluster(temp)
        shutil.rmtree(temp, ignore_errors=True)


def test_tune_on_bad_data_exits_2_and_ends_the_ray_runtime_it_started_meanwhile(small_spec):
    """Ray starts while the data is checked: a missing column still gets one message and exit 2,
    the runtime started meanwhile ends with the command, and no MLflow run is written."""
    small_spec.write_text(small_spec.read_text().replace("target: progression", "target: progresion"))
    temp = tempfile.mkdtemp(prefix="rmxb", dir="/tmp")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    try:
        process = subprocess.run([sys.executable, "-m", "raymlx.cli", "tune", str(small_spec)], capture_output=True,
                                 text=True, timeout=120, env={**env, "RAY_TMPDIR": temp})
        assert process.returncode == 2, process.stderr[-3000:]
        assert "progresion" in process.stderr and "Traceback" not in process.stderr
        assert list(Path(temp, "ray").glob("session_2*")), "Ray was not starting during the checks"
        left = [pid.name for pid in Path("/proc").iterdir() if pid.name.isdigit() and _uses(pid, temp)]
        assert left == [], f"Ray processes outlived the command: {left}"
        assert not (small_spec.parent / "mlflow.db").exists()
    finally:
        _kill_cluster(temp)
        shutil.rmtree(temp, ignore_errors=True)
