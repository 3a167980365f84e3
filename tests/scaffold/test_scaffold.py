"""raymlx init: each template validates and tunes as written, and never overwrites a file unless forced."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from raymlx.cli import app
from raymlx.scaffold import TEMPLATES, plan

runner = CliRunner()


def _raymlx(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "raymlx.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("template", TEMPLATES)
def test_a_fresh_scaffold_validates_and_tunes(tmp_path, template):
    project = tmp_path / "churn-2026"
    made = _raymlx("init", str(project), "--template", template, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    for name in ("specs.yaml", "models.py", "features.py", "README.md", ".gitignore", "raymlx.schema.json",
                 "data/sample.csv"):
        assert (project / name).is_file(), name
    spec_text = (project / "specs.yaml").read_text()
    assert spec_text.startswith("# yaml-language-server: $schema=raymlx.schema.json\n")
    spec = yaml.safe_load(spec_text)
    assert spec["name"] == "churn-2026"
    # The user's own code is part of the experiment, not decoration.
    assert any(m["model"].startswith("models.py:") for m in spec["models"].values())
    assert any(s["step"].startswith("features.py:") for steps in spec["pipelines"].values() for s in steps)

    checked = _raymlx("validate", "specs.yaml", cwd=project)
    assert checked.returncode == 0, checked.stderr
    assert f"valid ({len(spec['models'])} models" in checked.stdout
    tuned = _raymlx("tune", "specs.yaml", cwd=project)
    assert tuned.returncode == 0, tuned.stderr
    assert "models:/churn-2026@champion (version 1)" in tuned.stdout
    assert "failed;" not in tuned.stdout  # no model lost trials
    assert (project / "mlflow.db").is_file()
    ignored = (project / ".gitignore").read_text().split()
    assert {"mlflow.db", "mlartifacts/", ".raymlx/"} <= set(ignored)


def test_a_second_init_refuses_and_names_the_files(tmp_path):
    project = tmp_path / "p"
    assert runner.invoke(app, ["init", str(project)]).exit_code == 0
    (project / "specs.yaml").write_text("mine\n")
    (project / "notes.txt").write_text("not the template's\n")
    again = runner.invoke(app, ["init", str(project)])
    assert again.exit_code == 2
    message = " ".join(again.stderr.split())
    assert f"{project}: 7 of the files to write exist already: .gitignore, README.md, data/sample.csv, " \
           "features.py, models.py, raymlx.schema.json, specs.yaml; nothing was written" in message
    assert "notes.txt" not in message
    assert (project / "specs.yaml").read_text() == "mine\n"


def test_force_overwrites_the_templates_files_only(tmp_path):
    project = tmp_path / "p"
    assert runner.invoke(app, ["init", str(project)]).exit_code == 0
    (project / "specs.yaml").write_text("mine\n")
    (project / "notes.txt").write_text("kept\n")
    forced = runner.invoke(app, ["init", str(project), "--force", "--template", "forecasting"])
    assert forced.exit_code == 0, forced.output
    assert (project / "specs.yaml").read_bytes() == plan(project, template="forecasting")[Path("specs.yaml")]
    assert (project / "notes.txt").read_text() == "kept\n"


def test_init_into_a_folder_with_other_files_writes_beside_them(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mine.csv").write_text("a,b\n1,2\n")
    assert runner.invoke(app, ["init", str(tmp_path)]).exit_code == 0
    assert (tmp_path / "data" / "mine.csv").read_text() == "a,b\n1,2\n"


@pytest.mark.parametrize("args, message", [
    pytest.param(["--template", "images"], "unknown template 'images' (templates: tabular, forecasting)", id="template"),
    pytest.param([], "not a folder", id="file"),
])
def test_bad_arguments_exit_2(tmp_path, args, message):
    target = tmp_path / "taken"
    target.write_text("")
    result = runner.invoke(app, ["init", str(target if not args else tmp_path / "new"), *args])
    assert result.exit_code == 2
    assert message in " ".join(result.stderr.split())
