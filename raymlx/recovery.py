"""Sessions that did not end: their orphaned runs closed as KILLED, the last unfinished one found again to resume.

A session run records the process running it (``raymlx.driver``: host, PID, start time). A run
left RUNNING by a process that is gone (killed, crashed, the machine rebooted) is orphaned;
every ``raymlx tune`` of the spec closes such runs as KILLED before it starts. Runs of a process
on another host are left alone: whether it still runs cannot be told from here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from raymlx._processes import driver_alive, driver_id
from raymlx.errors import UserInputError
from raymlx.tracking import (DRIVER_TAG, MODEL_TAG, NAME_TAG, ROLE_TAG, SESSION_TAG, STATE_TAG, TRIAL_ID_TAG,
                             TUNE_PATH_TAG, Session, SessionRuns)

__all__ = ["close_orphans", "Resumable", "find_resumable", "reopen", "trial_runs_of"]

logger = logging.getLogger(__name__)

_MAX_RUNS = 50000


def _session_id(run: Run) -> str:
    return run.data.tags.get(SESSION_TAG) or run.info.run_id


def _orphaned(session: Run | None) -> bool:
    """A session whose process is gone (``None``: it ran on another host, so it may live)."""
    if session is None:
        return True
    recorded = session.data.tags.get(DRIVER_TAG)
    return recorded is None or driver_alive(recorded) is False


def close_orphans(client: MlflowClient, experiment_id: str, name: str) -> int:
    """Mark KILLED every RUNNING run of the spec's sessions whose process is gone.

    Returns:
        How many runs were closed.
    """
    running = client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'",
                                 max_results=_MAX_RUNS)
    by_session: dict[str, list[Run]] = {}
    for run in running:
        if run.data.tags.get(ROLE_TAG):
            by_session.setdefault(_session_id(run), []).append(run)
    closed = 0
    for session_id, runs in by_session.items():
        session = next((r for r in runs if r.info.run_id == session_id), None) or _get(client, session_id)
        if session is not None and session.data.tags.get(NAME_TAG, name) != name:
            continue  # another spec's session in the same experiment
        if not _orphaned(session):
            continue
        for run in runs:
            client.set_terminated(run.info.run_id, status="KILLED")
        closed += len(runs)
        logger.warning("session %s: %d runs left RUNNING by a process that is gone, marked KILLED", session_id,
                       len(runs))
    return closed


def _get(client: MlflowClient, run_id: str) -> Run | None:
    try:
        return client.get_run(run_id)
    except Exception:  # noqa: BLE001 - a deleted session run: its children are orphans either way
        return None


@dataclass(frozen=True)
class Resumable:
    """The last unfinished session of a spec: its session run and Tune's experiment directory."""

    session: Run
    tune_path: str


def find_resumable(client: MlflowClient, experiment_id: str, name: str) -> Resumable | None:
    """The spec's last session, when it is partial (interrupted, killed, failed); ``None`` when it completed.

    Raises:
        UserInputError: The last session is still running in a live process.
    """
    last = client.search_runs([experiment_id], max_results=1, order_by=["attributes.start_time DESC"],
                              filter_string=f"tags.`{ROLE_TAG}` = 'session' and tags.`{NAME_TAG}` = '{name}'")
    if not last or last[0].data.tags.get(STATE_TAG) != "partial" or TUNE_PATH_TAG not in last[0].data.tags:
        return None
    session = last[0]
    if session.info.status == "RUNNING" and not _orphaned(session):
        raise UserInputError(f"session {session.info.run_id} of '{name}' is still running "
                             f"(process {session.data.tags.get(DRIVER_TAG)}); wait for it or stop it first")
    return Resumable(session, session.data.tags[TUNE_PATH_TAG])


def reopen(client: MlflowClient, session: Run, *, tracking_uri: str) -> Session:
    """Mark an unfinished session's run and its models' runs RUNNING again, now in this process."""
    session_id = session.info.run_id
    parents = {r.data.tags[MODEL_TAG]: r.info.run_id for r in client.search_runs(
        [session.info.experiment_id], max_results=_MAX_RUNS,
        filter_string=f"tags.`{ROLE_TAG}` = 'model' and tags.`{SESSION_TAG}` = '{session_id}'")}
    for run_id in [session_id, *parents.values()]:
        client.update_run(run_id, status="RUNNING")
    client.set_tag(session_id, DRIVER_TAG, driver_id())
    return Session(session.info.experiment_id, session_id, parents, tracking_uri)


def trial_runs_of(client: MlflowClient, session: SessionRuns) -> list[Run]:
    """The trial runs a session holds (those tagged with Tune's trial id)."""
    runs = client.search_runs([session.experiment_id], max_results=_MAX_RUNS,
                              filter_string=f"tags.`{ROLE_TAG}` = 'trial' and tags.`{SESSION_TAG}` = '{session.session_id}'")
    return [r for r in runs if TRIAL_ID_TAG in r.data.tags]
