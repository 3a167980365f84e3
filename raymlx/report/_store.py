"""Where a report lives in MLflow: finding a session's runs, writing a section's artifacts, reading them back."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from raymlx.errors import UserInputError
from raymlx.report._section import SECTION_FILE, Chart, Section
from raymlx.tracking import MODEL_TAG, ROLE_TAG, SESSION_TAG

__all__ = ["SessionRef", "find_session", "session_runs", "model_runs", "model_trials", "log_section", "log_files", "download",
           "read_section", "read_json", "read_chart"]

MAX_RUNS = 50_000


class SessionRef:
    """One session run of an experiment, with its client."""

    def __init__(self, client: MlflowClient, run) -> None:
        self.client = client
        self.run = run

    @property
    def run_id(self) -> str:
        return self.run.info.run_id

    @property
    def experiment_id(self) -> str:
        return self.run.info.experiment_id


def find_session(tracking_uri: str, experiment: str, run_id: str | None = None) -> SessionRef:
    """The named session run, or the experiment's latest one.

    Raises:
        UserInputError: When the experiment never ran, or the run is unknown or not a session of it.
    """
    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise UserInputError(f"experiment '{experiment}' has no runs in {tracking_uri}: the spec never ran; "
                             f"run `raymlx tune` first")
    if run_id is None:
        runs = client.search_runs([found.experiment_id], f"tags.`{ROLE_TAG}` = 'session'",
                                  order_by=["attributes.start_time DESC"], max_results=1)
        if not runs:
            raise UserInputError(f"experiment '{experiment}' in {tracking_uri} has no session run: "
                                 f"the spec never ran; run `raymlx tune` first")
        return SessionRef(client, runs[0])
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise UserInputError(f"--run {run_id}: no such run in {tracking_uri}") from None
    role = run.data.tags.get(ROLE_TAG)
    if run.info.experiment_id != found.experiment_id or role != "session":
        what = f"a {role} run" if role else "not a raymlx run"
        raise UserInputError(f"--run {run_id}: not a session run of experiment '{experiment}' ({what}); "
                             f"name the run of a whole `raymlx tune`")
    return SessionRef(client, run)


def session_runs(session: SessionRef, role: str) -> list:
    """The session's runs of a role (``model`` or ``trial``)."""
    query = f"tags.`{SESSION_TAG}` = '{session.run_id}' and tags.`{ROLE_TAG}` = '{role}'"
    return session.client.search_runs([session.experiment_id], query, max_results=MAX_RUNS)


def model_trials(client: MlflowClient, experiment_id: str, session_id: str, model: str) -> list:
    """One model's trial runs in a session."""
    query = (f"tags.`{SESSION_TAG}` = '{session_id}' and tags.`{ROLE_TAG}` = 'trial' "
             f"and tags.`{MODEL_TAG}` = '{model}'")
    return client.search_runs([experiment_id], query, max_results=MAX_RUNS)


def model_runs(session: SessionRef) -> dict[str, Any]:
    """Each model's parent run, by model name."""
    return {r.data.tags[MODEL_TAG]: r for r in session_runs(session, "model")}


def log_section(client: MlflowClient, section: Section, *, frames: dict[str, pd.DataFrame] | None = None) -> None:
    """Write a section's charts, its outline and any tables as artifacts of its run, in one upload."""
    with tempfile.TemporaryDirectory(prefix="raymlx-report-") as folder:
        root = Path(folder)
        for chart in section.charts:
            _write(root / chart.path, chart.png)
        for path, frame in (frames or {}).items():
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            frame.to_parquet(root / path)
        _write(root / SECTION_FILE, json.dumps(section.meta(), indent=1, default=str).encode())
        client.log_artifacts(section.run_id, str(root))


def log_files(client: MlflowClient, run_id: str, files: dict[str, bytes]) -> None:
    """Write files (artifact path to bytes) as artifacts of a run, in one upload."""
    with tempfile.TemporaryDirectory(prefix="raymlx-report-") as folder:
        for path, data in files.items():
            _write(Path(folder) / path, data)
        client.log_artifacts(run_id, folder)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def download(client: MlflowClient, run_id: str, paths: tuple[str, ...], folder: Path) -> Path:
    """Download artifact paths of a run (files or folders) under ``folder``; absent ones are skipped."""
    for path in paths:
        try:
            client.download_artifacts(run_id, path, str(folder))
        except (MlflowException, OSError):
            continue  # not logged by this session
    return folder


def read_json(root: Path, path: str) -> Any:
    """A downloaded JSON artifact, or ``None``."""
    file = root / path
    return json.loads(file.read_text()) if file.is_file() else None


def read_chart(root: Path, meta: dict) -> Chart:
    """A chart listed in an outline, with its downloaded PNG (empty when it is missing)."""
    file = root / meta["path"]
    return Chart(meta["path"], meta["title"], meta["group"], file.read_bytes() if file.is_file() else b"")


def read_section(client: MlflowClient, name: str, run_id: str) -> Section | None:
    """A model's section as logged, or ``None`` when the run has none (its session ran without reports)."""
    with tempfile.TemporaryDirectory(prefix="raymlx-report-") as folder:
        root = download(client, run_id, ("report", "plots"), Path(folder))
        meta = read_json(root, SECTION_FILE)
        if meta is None:
            return None
        charts = [read_chart(root, c) for c in meta["charts"]]
    return Section(name, run_id, charts, list(meta["notes"]), dict(meta.get("facts", {})))
