"""Ctrl-C and SIGKILL of a running `raymlx tune`, and `--resume`: MLflow's run states, the alias, leftover processes."""

from __future__ import annotations

import re
import textwrap
from collections import Counter
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from raymlx.search import model_searcher
from raymlx.spec_io import load_spec
from tests.listening import descendants, exposed, listening
from tests.reliability.test_credentials import SECRET, _files_holding
from tests.test_remote_tracking import mlflow_server  # noqa: F401 - the fixture

pytestmark = pytest.mark.slow

TOTAL = 10  # trials of tests/reliability/conftest.py's SPEC


def _statuses(runs) -> Counter:
    return Counter(r.info.status for r in runs)


def _expected_configs(project: Path) -> list[tuple[str, float]]:
    """The configurations an uninterrupted run of the spec tries: each model's seeded search, in order."""
    spec = load_spec(project / "specs.yaml").spec
    configs = []
    for name, model in spec.models.items():
        searcher, budget = model_searcher(model.search, metric="rmse", mode="min")
        configs += [(name, round(searcher.suggest(f"{name}{i}")["seconds"], 9)) for i in range(budget)]
    return sorted(configs)


def _tried(driver) -> list[tuple[str, float]]:
    return sorted((r.data.tags["raymlx.model"], round(float(r.data.params["params/seconds"]), 9))
                  for r in driver.runs("trial"))


def _assert_completed_once(driver) -> None:
    """One session, complete; one finished run per configuration of an uninterrupted run, no more."""
    (session,) = driver.runs("session")
    assert (session.info.status, session.data.tags["raymlx.state"]) == ("FINISHED", "complete")
    assert {(r.info.status, r.data.tags["raymlx.state"]) for r in driver.runs("model")} == {("FINISHED", "complete")}
    trials = driver.runs("trial")
    assert _statuses(trials) == {"FINISHED": TOTAL}
    assert len({r.data.tags["raymlx.trial_id"] for r in trials}) == TOTAL
    assert _tried(driver) == _expected_configs(driver.project)
    assert driver.champion_version() == "1"


def test_ctrl_c_mid_trials_and_during_the_refit_then_resume(driver, mlflow_server):
    """Tracked to a real tracking server through a URI with a password: the password is in nothing printed or
    written, Ctrl-C's resume hint and Tune's saved state included; Ray listens on loopback only meanwhile."""
    server, server_root = mlflow_server
    driver.tracking = server
    driver.options = ("--set", "tracking.uri=" + server.replace("http://", f"http://alice:{SECRET}@"))
    printed = []
    driver.start()
    driver.wait_until(lambda: driver.trials_finished() >= 2)
    run = descendants(driver.process.pid)
    assert {"gcs_server", "raylet"} <= {name for _, name, _ in listening(run)}
    assert exposed(run) == []
    driver.interrupt()
    code, out, err = driver.finish()
    printed += [out, err]
    assert code == 130, err[-3000:]
    said = re.search(r"interrupted after (\d+) of 10 trials; resume with: raymlx tune specs\.yaml "
                     r"--set tracking\.uri=http://alice:\*\*\*@127\.0\.0\.1:\d+ --resume", err)
    assert said and 2 <= int(said.group(1)) < TOTAL, err[-2000:]
    assert "Traceback" not in err and "champion" not in out
    assert driver.no_ray_processes_within(20) == []
    (session,) = driver.runs("session")
    assert (session.info.status, session.data.tags["raymlx.state"]) == ("KILLED", "partial")
    assert {(r.info.status, r.data.tags["raymlx.state"]) for r in driver.runs("model")} == {("KILLED", "partial")}
    trials = _statuses(driver.runs("trial"))
    assert "RUNNING" not in trials and trials["FINISHED"] == int(said.group(1))
    assert driver.champion_version() is None

    # Resumed, then interrupted again while the champion is refit in the driver: nothing registered.
    process = driver.start("--resume")
    driver.wait_until(lambda: process.pid in driver.fits())
    driver.interrupt()
    code, out, err = driver.finish()
    printed += [out, err]
    assert code == 130 and "interrupted after 10 of 10 trials" in err, err[-3000:]
    assert driver.champion_version() is None
    assert [s.info.status for s in driver.runs("session")] == ["KILLED"]
    assert _statuses(driver.runs("trial")) == {"FINISHED": TOTAL}
    assert driver.no_ray_processes_within(20) == []

    code, out, err = driver.run("--resume")
    printed += [out, err]
    assert code == 0, err[-3000:]
    assert "champion: first registered" in out or "champion: second registered" in out
    _assert_completed_once(driver)
    assert list((driver.project / ".raymlx").rglob("tuner.pkl"))  # Tune's saved state is among what is searched
    assert [i for i, text in enumerate(printed) if SECRET in text] == []
    for root in (driver.project, Path(driver.temp), server_root):
        assert _files_holding(root, SECRET) == [], root
    assert "View run" not in out  # MLflow's per-run URL lines stay off without --verbose
    (session,) = driver.runs("session")
    resolved = Path(MlflowClient(server).download_artifacts(session.info.run_id, "spec.resolved.yaml")).read_text()
    assert "uri: http://alice:***@127.0.0.1" in resolved  # the effective spec is logged, its password masked


def test_sigkill_mid_trials_leaves_nothing_running_and_resume_completes(driver):
    driver.start()
    driver.wait_until(lambda: driver.trials_finished() >= 2)
    driver.kill()
    assert driver.finish()[0] == -9
    assert driver.no_ray_processes_within(15) == [], "Ray's processes outlived the killed driver"
    assert "RUNNING" in _statuses(driver.runs("session"))  # the killed driver could close nothing

    code, out, err = driver.run("--resume")
    assert code == 0, err[-3000:]
    assert "RUNNING" not in _statuses(driver.runs())
    _assert_completed_once(driver)
    assert driver.no_ray_processes_within(20) == []


def test_ctrl_c_before_ray_is_up_exits_130_and_leaves_nothing(driver):
    driver.start()
    driver.wait_until(lambda: bool(list(Path(driver.temp).glob("ray/session_2*"))), timeout=120)  # Ray starting
    driver.interrupt()
    code, out, err = driver.finish()
    assert code == 130, err[-3000:]
    # Where the Ctrl-C lands inside an import (pandas' extensions), the trial count cannot be read any more.
    assert re.search(r"interrupted (after 0 of 10 trials|before the first trial); resume with: "
                     r"raymlx tune specs\.yaml --resume", err), err[-3000:]
    assert "Traceback" not in err
    assert driver.no_ray_processes_within(20) == []
    assert "RUNNING" not in _statuses(driver.runs())
    assert driver.champion_version() is None


def _agents(driver) -> list[int]:
    """Ray's dashboard and runtime-env agents: what outlived a killed driver before the watchdog."""
    found = []
    for pid in driver.ray_processes():
        try:
            if b"Agent" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            continue  # gone meanwhile
    return found


def test_sigkill_once_rays_agents_run_leaves_no_ray_process(driver):
    driver.start()
    driver.wait_until(lambda: bool(_agents(driver)), timeout=120)
    driver.kill()
    assert driver.finish()[0] == -9
    assert driver.no_ray_processes_within(15) == [], "Ray's processes outlived the killed driver"


VICTIMS = """
name: reliable
task: regression
data: {uri: data/diabetes.csv, target: progression}
validation: {folds: 2}
tracking: {uri: "sqlite:///mlflow.db"}
runtime: {num_cpus: 2, trials_on_driver: false}  # every fit in a worker: the test kills them
baseline: false
report: {enabled: false}  # the report refits the winner in processes of its own: only trials' fits counted here
models:
  retried:
    model: sleepy.py:Sleepy
    params: {label: retried}
    max_failures: 1
    search: {num_samples: 1, space: {seconds: {type: float, low: 2.0, high: 2.5}}}
  doomed:
    model: sleepy.py:Sleepy
    params: {label: doomed}
    search: {num_samples: 1, space: {seconds: {type: float, low: 2.0, high: 2.5}}}
"""


def test_a_killed_trial_worker_is_retried_up_to_max_failures_and_named_when_not(driver):
    import os
    import signal

    (driver.project / "specs.yaml").write_text(textwrap.dedent(VICTIMS))
    process = driver.start()
    for label in ("retried", "doomed"):
        driver.wait_until(lambda: bool(set(driver.fits(label)) - {process.pid}))
        (victim,) = set(driver.fits(label)) - {process.pid}
        os.kill(victim, signal.SIGKILL)
    code, out, err = driver.finish(timeout=300)
    assert code == 0, err[-3000:]
    runs = {r.data.tags["raymlx.model"]: r for r in driver.runs("trial")}
    assert sorted(runs) == ["doomed", "retried"]  # one run per trial, retries included
    assert runs["retried"].info.status == "FINISHED"
    assert len(set(driver.fits("retried")) - {process.pid}) == 2  # the retry ran in a new worker
    assert runs["doomed"].info.status == "FAILED"
    assert re.match(r"worker process \d+ died \(killed by a signal", runs["doomed"].data.tags["raymlx.error"])
    assert "champion: retried registered" in out
