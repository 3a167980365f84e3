"""A model's section starts as soon as its own trials have ended, while other models still tune."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from raymlx.report._priority import priority_of
from raymlx.report._section import SUMMARY_FILE
from raymlx.report._store import find_session, model_runs, read_section
from raymlx.tracking import MODEL_TAG, ROLE_TAG, SESSION_TAG


def _trial_ends(session) -> dict[str, list[float]]:
    client = MlflowClient(session.result.tracking_uri)
    query = f"tags.`{ROLE_TAG}` = 'trial' and tags.`{SESSION_TAG}` = '{session.result.session_run_id}'"
    ends = defaultdict(list)
    for run in client.search_runs([session.result.experiment_id], query):
        ends[run.data.tags[MODEL_TAG]].append(run.info.end_time / 1000)
    return ends


def test_a_section_starts_when_its_models_trials_end_while_others_tune(forecasting):
    """Prophet's trials take seconds: the other models end before it, and their sections start then."""
    ends = _trial_ends(forecasting)
    assert set(forecasting.submitted) == set(ends)  # every model's section was drawn
    last = max(max(times) for times in ends.values())
    early = [name for name, at in forecasting.submitted.items() if at < last]
    assert early, f"every section started after the last trial ended ({forecasting.submitted}, last {last})"
    for name in early:  # not before its own trials have all ended (and their runs were written)
        assert max(ends[name]) <= forecasting.submitted[name]


def _children(pid: int) -> dict[int, str]:
    """The processes whose parent is ``pid``, with their command lines (from /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if parent == pid:
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (ValueError, IndexError, OSError):
            continue  # not a process, or one that just ended
    return found


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")
def test_the_report_draws_at_the_lowest_cpu_priority(forecasting):
    """Trials run at Ray's niceness 15: a report at the default priority would take their cores. (A section
    started after Tune ended may run at the driver's priority again: see test_priority.py.)"""
    result = forecasting.result
    runs = model_runs(find_session(result.tracking_uri, forecasting.loaded.spec.experiment_name, result.session_run_id))
    for name in forecasting.submitted:  # the process that drew each section
        section = read_section(MlflowClient(result.tracking_uri), name, runs[name].info.run_id)
        assert section is not None and section.facts["cpu_priority"] in {"idle, nice 19", priority_of(0)}, section.facts
    servers = [pid for pid, line in _children(os.getpid()).items() if "multiprocessing.forkserver" in line]
    assert servers, "no fork server among this process's children"
    for pid in servers:  # the server the report's processes fork from, every thread of it
        threads = [int(t.name) for t in Path(f"/proc/{pid}/task").iterdir()]
        assert {priority_of(t) for t in threads} == {"idle, nice 19"}
    assert not priority_of(0).startswith("idle")  # the driver keeps its own


def test_the_tail_after_tuning_is_logged_from_the_end_of_the_last_models_trials(forecasting):
    """The overview is handed over and the report's processes take their priority back when the last model's trials
    end (before the champion's refit): the session's outline times the report's tail from then."""
    result = forecasting.result
    session = find_session(result.tracking_uri, forecasting.loaded.spec.experiment_name, result.session_run_id)
    outline = json.loads(Path(session.client.download_artifacts(session.run_id, SUMMARY_FILE)).read_text())
    timeline = outline["timeline_s"]
    assert timeline["tuning ended"] == 0.0, timeline
    assert 0 <= timeline["report finishing"] <= timeline["sections drawn"] <= timeline["overview drawn"], timeline
    last = max(_trial_ends(forecasting).items(), key=lambda item: max(item[1]))[0]
    assert timeline[f"{last} drawn"] <= timeline["sections drawn"], timeline  # its section: drawn after tuning ended
    assert list(timeline.values()) == sorted(timeline.values())
