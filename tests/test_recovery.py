"""Orphaned runs and the session to resume, on a real sqlite MLflow store."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from raymlx._processes import driver_id, start_time
from raymlx.errors import UserInputError
from raymlx.recovery import close_orphans, find_resumable, reopen
from raymlx.tracking import DRIVER_TAG, NAME_TAG, SESSION_TAG, TUNE_PATH_TAG, start_runs


def _dead_driver() -> str:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    started = start_time(process.pid)
    process.wait()
    return f"{socket.gethostname()}:{process.pid}:{started}"


@pytest.fixture
def store(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    return client, client.create_experiment("e")


def _session(client, experiment_id, *, driver: str, name: str = "spec", trials: int = 1):
    tags = {NAME_TAG: name, DRIVER_TAG: driver, TUNE_PATH_TAG: f"/tmp/{name}"}
    session, parents = start_runs(client, experiment_id, name=name, models=["m"], tags=tags)
    for _ in range(trials):
        client.create_run(experiment_id, tags={"raymlx.role": "trial", SESSION_TAG: session})
    return session


def _status_of_session(client, experiment_id, session) -> set[str]:
    runs = client.search_runs([experiment_id], filter_string=f"tags.`{SESSION_TAG}` = '{session}'")
    return {client.get_run(session).info.status, *(r.info.status for r in runs)}


def test_runs_of_a_dead_process_are_closed_as_killed_and_a_live_ones_are_not(store):
    client, experiment_id = store
    dead = _session(client, experiment_id, driver=_dead_driver(), trials=2)
    live = _session(client, experiment_id, driver=driver_id())
    elsewhere = _session(client, experiment_id, driver="another-host:1:1")
    other_spec = _session(client, experiment_id, driver=_dead_driver(), name="other")
    assert close_orphans(client, experiment_id, "spec") == 4  # session, model parent, two trials
    assert _status_of_session(client, experiment_id, dead) == {"KILLED"}
    for untouched in (live, elsewhere, other_spec):
        assert _status_of_session(client, experiment_id, untouched) == {"RUNNING"}


def test_the_last_partial_session_is_resumed_and_a_live_one_is_refused(store):
    client, experiment_id = store
    first = _session(client, experiment_id, driver=_dead_driver())
    client.set_tag(first, "raymlx.state", "complete")
    second = _session(client, experiment_id, driver=_dead_driver())
    close_orphans(client, experiment_id, "spec")
    found = find_resumable(client, experiment_id, "spec")
    assert found is not None and (found.session.info.run_id, found.tune_path) == (second, "/tmp/spec")
    session = reopen(client, found.session, tracking_uri=client.tracking_uri)
    assert _status_of_session(client, experiment_id, second) >= {"RUNNING"}
    assert client.get_run(second).data.tags[DRIVER_TAG] == driver_id()
    assert list(session.parents) == ["m"]
    with pytest.raises(UserInputError, match="is still running"):
        find_resumable(client, experiment_id, "spec")  # now this live process holds it
    session.end(status="FINISHED")
    assert find_resumable(client, experiment_id, "spec") is None
