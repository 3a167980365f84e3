"""Gated promotion on a real Ray runtime and real sqlite MLflow stores: the champion alias moves only to a better winner."""

from __future__ import annotations

import shutil
import subprocess
import textwrap
from importlib import metadata

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from raymlx.checks import validate
from raymlx.experiment import run_experiment
from raymlx.spec_io import load_spec
from tests.conftest import DIABETES

NAME = "gate"


def _spec(models: str, margin: float = 0.0) -> str:
    return textwrap.dedent(f"""
        name: {NAME}
        task: regression
        data: {{uri: data/diabetes.csv, target: progression}}
        validation: {{strategy: kfold, folds: 3}}
        promotion: {{metric_margin: {margin}}}
        baseline: false
        models:
        """) + textwrap.indent(textwrap.dedent(models), "  ")


GOOD = """
ridge:
  model: sklearn.linear_model:Ridge
  search: {algorithm: grid, space: {alpha: {type: choice, values: [1.0]}}}
"""
BAD = """
stump:
  model: sklearn.tree:DecisionTreeRegressor
  params: {random_state: 0}
  search: {algorithm: grid, space: {max_depth: {type: choice, values: [1]}}}
"""


@pytest.fixture
def project(tmp_path):
    (tmp_path / "data").mkdir()
    shutil.copy(DIABETES, tmp_path / "data" / "diabetes.csv")
    return tmp_path


def _tune(project, models: str, *, margin: float = 0.0, force: bool = False, data: pd.DataFrame | None = None):
    if data is not None:
        data.to_csv(project / "data" / "diabetes.csv", index=False)
    (project / "specs.yaml").write_text(_spec(models, margin))
    loaded = load_spec(project / "specs.yaml")
    return run_experiment(loaded, validate(loaded), force_promote=force)


def _aliases(result) -> dict[str, str]:
    model = MlflowClient(result.tracking_uri).get_registered_model(NAME)
    return {alias: str(version) for alias, version in model.aliases.items()}


def _git_commit(project) -> str:
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    subprocess.run(["git", "-C", str(project), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q",
                    "--allow-empty", "-m", "start"], check=True)
    return subprocess.run(["git", "-C", str(project), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()


def _tags(result) -> dict[str, str]:
    return MlflowClient(result.tracking_uri).get_model_version(NAME, result.champion_version).tags


def test_a_worse_winner_becomes_the_challenger_and_a_better_one_the_champion(ray_runtime, project):
    commit = _git_commit(project)
    first = _tune(project, BAD)
    assert first.promoted and first.promotion == "first champion"
    assert _aliases(first) == {"champion": "1"}

    worse = _tune(project, BAD, margin=1000.0)  # the same model must now improve by 1000: it cannot
    assert not worse.promoted and worse.champion_version == "2"
    assert _aliases(worse) == {"champion": "1", "challenger": "2"}
    assert "does not beat" in worse.promotion and "by the margin 1000" in worse.promotion
    assert worse.champion_uri == f"models:/{NAME}@challenger"

    better = _tune(project, GOOD)
    assert better.promoted and better.champion_version == "3"
    assert _aliases(better)["champion"] == "3"
    stump = float(first.leaderboard[0].score)
    assert f"against {stump:.4g} for champion version 1" in better.promotion

    forced = _tune(project, BAD, force=True)
    assert forced.promoted and _aliases(forced)["champion"] == "4"
    assert "--force-promote" in forced.promotion

    tags, best = _tags(first), first.leaderboard[0]
    assert tags["raymlx.score"] == f"{best.score:.6g}" and tags["raymlx.score_std"] == f"{best.score_std:.6g}"
    assert tags["raymlx.metric"] == "rmse" and tags["raymlx.model"] == "stump"
    assert tags["raymlx.data_rows"] == "442" and tags["raymlx.data_sha256"] == _tags(worse)["raymlx.data_sha256"]
    assert tags["raymlx.spec_sha256"] != _tags(worse)["raymlx.spec_sha256"]  # the margin changed
    assert tags["raymlx.spec_sha256"] == _tags(forced)["raymlx.spec_sha256"]
    assert tags["raymlx.version"] == metadata.version("raymlx")
    assert tags["raymlx.git_commit"] == commit
    assert _tags(worse)["raymlx.promotion"] == worse.promotion


def test_the_champion_is_rescored_on_the_new_run_s_folds_not_its_stored_score(ray_runtime, project):
    clean = pd.read_csv(DIABETES)
    first = _tune(project, GOOD, data=clean)
    noisy = clean.assign(progression=clean["progression"] + np.random.default_rng(0).normal(0, 60, len(clean)))
    second = _tune(project, GOOD, data=noisy)
    # The same configuration on the noisier data scores worse than the champion's stored score; rescored on
    # the new folds, the champion scores exactly what the new winner scores, and an equal score passes.
    assert second.leaderboard[0].score > first.leaderboard[0].score + 5
    assert second.promoted, second.promotion
    new = second.leaderboard[0].score
    assert f"rmse {new:.4g} against {new:.4g} for champion version 1" in second.promotion
    assert _tags(first)["raymlx.data_sha256"] != _tags(second)["raymlx.data_sha256"]
