"""The champion's registration in threads of its own, on a real sqlite MLflow store: it overlaps the caller's
work (Ray's shutdown, in a run) and registers the same model as one step after another would."""

from __future__ import annotations

import threading
import time
from concurrent.futures import CancelledError, ThreadPoolExecutor
from dataclasses import replace

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from raymlx.checks import validate
from raymlx.champion.register import ChampionRegistration, refit
from raymlx.folds import make_folds
from raymlx.metrics import get_metric
from raymlx.select import LeaderboardRow
from raymlx.spec_io import load_spec
from raymlx.tracking import ensure_experiment, resolve_tracking_uri, start_runs

SPEC = """\
name: ends
task: regression
data: {uri: data/diabetes.csv, target: progression}
validation: {strategy: kfold, folds: 3}
baseline: false
models:
  ridge:
    model: sklearn.linear_model:Ridge
    search: {algorithm: grid, space: {alpha: {type: choice, values: [1.0]}}}
"""


@pytest.fixture
def session(project):
    (project / "specs.yaml").write_text(SPEC)
    loaded = load_spec(project / "specs.yaml")
    uri = resolve_tracking_uri(loaded.spec.tracking.uri, loaded.base_dir)
    experiment_id = ensure_experiment(loaded.spec.experiment_name, tracking_uri=uri, base_dir=loaded.base_dir)
    session_id, _ = start_runs(MlflowClient(uri), experiment_id, name="ends", models=["ridge"])
    frame = validate(loaded)
    return loaded, frame, uri, experiment_id, session_id


def _registration(pool, session, best: LeaderboardRow, **kwargs) -> ChampionRegistration:
    loaded, frame, uri, experiment_id, session_id = session
    return ChampionRegistration(pool, loaded, frame, best, metric=get_metric("rmse"),
                                folds=make_folds(frame, loaded.spec), tracking_uri=uri, run_id=session_id,
                                experiment_id=experiment_id, **kwargs)


def test_the_refit_and_the_model_s_log_run_while_the_caller_goes_on(session):
    loaded, frame, uri, _, _ = session
    best = LeaderboardRow("ridge", 55.0, 1.0, {"alpha": 1.0}, trials=1, failed=0, wall_time_s=0.1)
    caller_went_on, fitted_in, steps = threading.Event(), [], []

    def fitted():
        fitted_in.append(threading.current_thread().name)
        caller_went_on.wait(timeout=10)  # only returns at once when the caller is not the one refitting
        return refit(loaded, frame, best)

    started = time.perf_counter()
    with ThreadPoolExecutor(1, thread_name_prefix="end") as pool:
        registration = _registration(pool, session, best, fitted=fitted,
                                     timed=lambda name: _Step(name, steps))
        returned_after = time.perf_counter() - started
        caller_went_on.set()
        champion = registration.result()
    assert returned_after < 5 and fitted_in[0].startswith("end")
    assert {"champion model logged", "current champion rescored"} <= set(steps)
    assert champion.decision.promote and champion.decision.reason == "first champion"
    assert champion.uri == "models:/ends@champion" and champion.version == "1"


def test_a_registration_cancelled_while_it_refits_logs_and_registers_nothing(session):
    loaded, frame, uri, experiment_id, _ = session
    best = LeaderboardRow("ridge", 55.0, 1.0, {"alpha": 1.0}, trials=1, failed=0, wall_time_s=0.1)
    refitting, cancelled = threading.Event(), threading.Event()

    def fitted():  # the caller is interrupted (Ctrl-C) while the winner is refit
        refitting.set()
        cancelled.wait(timeout=10)
        return refit(loaded, frame, best)

    with ThreadPoolExecutor(1) as pool:
        registration = _registration(pool, session, best, fitted=fitted)
        assert refitting.wait(timeout=30)
        registration.cancel()
        cancelled.set()
    with pytest.raises(CancelledError):
        registration.result()
    client = MlflowClient(uri)
    assert client.search_logged_models(experiment_ids=[experiment_id]) == []
    assert client.search_registered_models() == []


def test_the_registered_version_is_the_model_with_its_example_signature_and_tags(session):
    loaded, frame, uri, _, session_id = session
    best = LeaderboardRow("ridge", 50.0, 1.5, {"alpha": 1.0}, trials=1, failed=0, wall_time_s=0.1)
    with ThreadPoolExecutor(1) as pool:
        first = _registration(pool, session, best).result()
    # The same configuration again, claiming a worse score than its own rescored on these folds: the challenger.
    with ThreadPoolExecutor(1) as pool:
        second = _registration(pool, session, replace(best, score=best.score + 10)).result()
    client = MlflowClient(uri)
    versions = {v: client.get_model_version("ends", v) for v in ("1", "2")}
    current = second.decision.current
    assert not second.decision.promote and current is not None and current.version == "1"
    assert f"does not beat {current.score:.4g} of champion version 1" in second.decision.reason
    assert versions["2"].tags["raymlx.promotion"] == second.decision.reason
    assert versions["1"].tags["raymlx.promotion"] == first.decision.reason == "first champion"
    assert versions["1"].tags["raymlx.score_std"] == "1.5" and versions["2"].run_id == session_id
    aliases = client.get_registered_model("ends").aliases
    assert {alias: str(v) for alias, v in aliases.items()} == {"champion": "1", "challenger": "2"}
    mlflow.set_tracking_uri(uri)
    info = mlflow.models.get_model_info("models:/ends@champion")
    assert info.signature is not None and info.saved_input_example_info is not None
    rows = frame.drop(columns="progression").head(20)
    served = mlflow.pyfunc.load_model("models:/ends@champion").predict(rows)
    expected = refit(loaded, frame, best).predict(rows)
    pd.testing.assert_series_equal(pd.Series(served, dtype=float), pd.Series(expected, dtype=float),
                                   check_names=False)


class _Step:
    """Records that a step of the registration ran under its name."""

    def __init__(self, name: str, steps: list[str]) -> None:
        self.name, self.steps = name, steps

    def __enter__(self) -> None:
        self.steps.append(self.name)

    def __exit__(self, *exc) -> None:
        return None
