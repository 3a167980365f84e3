"""The MLflow tracking URI a spec names, and its experiment, in a real sqlite store under tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from raymlx.tracking import ensure_experiment, resolve_tracking_uri


@pytest.mark.parametrize(("uri", "relative"), [
    pytest.param("sqlite:///mlflow.db", "mlflow.db", id="file"),
    pytest.param("sqlite:///runs/mlflow.db", "runs/mlflow.db", id="subfolder"),
    pytest.param("sqlite:///../shared/mlflow.db", "../shared/mlflow.db", id="parent-folder"),
])
def test_relative_sqlite_is_relative_to_the_spec_folder(uri, relative, tmp_path, tmp_path_factory, monkeypatch):
    spec_dir = tmp_path / "project"
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    assert resolve_tracking_uri(uri, spec_dir) == "sqlite:///" + str((spec_dir / relative).resolve())


@pytest.mark.parametrize("uri", [
    pytest.param("sqlite:////srv/mlflow/mlflow.db", id="absolute-sqlite"),
    pytest.param("sqlite:///:memory:", id="in-memory"),
    pytest.param("http://127.0.0.1:5000", id="http"),
    pytest.param("https://mlflow.example.com/", id="https"),
    pytest.param("file:///srv/mlruns", id="file-url"),
    pytest.param("postgresql://user@db/mlflow", id="postgresql"),
    pytest.param("databricks", id="databricks"),
])
def test_other_uris_are_unchanged(uri, tmp_path):
    assert resolve_tracking_uri(uri, tmp_path) == uri


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[str, Path]:
    """One sqlite store for the module (creating its tables takes a while): its URI and spec folder."""
    spec_dir = tmp_path_factory.mktemp("project")
    return resolve_tracking_uri("sqlite:///mlflow.db", spec_dir), spec_dir


def test_ensure_experiment_creates_the_store_beside_the_spec(store, tmp_path, monkeypatch):
    uri, spec_dir = store
    monkeypatch.chdir(tmp_path)
    ensure_experiment("created", tracking_uri=uri, base_dir=spec_dir)
    assert (spec_dir / "mlflow.db").is_file()
    assert list(tmp_path.iterdir()) == []  # nothing in the working directory


def test_ensure_experiment_is_idempotent(store):
    uri, spec_dir = store
    first = ensure_experiment("twice", tracking_uri=uri, base_dir=spec_dir)
    second = ensure_experiment("twice", tracking_uri=uri, base_dir=spec_dir)
    assert first == second
    names = [e.name for e in MlflowClient(uri).search_experiments()]
    assert names.count("twice") == 1


def test_experiments_of_other_names_are_distinct(store):
    uri, spec_dir = store
    assert ensure_experiment("one", tracking_uri=uri, base_dir=spec_dir) != ensure_experiment(
        "other", tracking_uri=uri, base_dir=spec_dir)


def test_artifacts_of_a_sqlite_store_go_to_mlartifacts_beside_the_spec(store):
    uri, spec_dir = store
    experiment_id = ensure_experiment("artifacts", tracking_uri=uri, base_dir=spec_dir)
    experiment = MlflowClient(uri).get_experiment(experiment_id)
    assert experiment.name == "artifacts"
    assert experiment.artifact_location == (spec_dir / "mlartifacts").resolve().as_uri()


def test_an_existing_experiment_keeps_its_artifact_location(store, tmp_path):
    uri, spec_dir = store
    experiment_id = ensure_experiment("kept", tracking_uri=uri, base_dir=spec_dir)
    assert ensure_experiment("kept", tracking_uri=uri, base_dir=tmp_path) == experiment_id
    location = MlflowClient(uri).get_experiment(experiment_id).artifact_location
    assert location == (spec_dir / "mlartifacts").resolve().as_uri()
