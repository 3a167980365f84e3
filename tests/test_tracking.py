"""The MLflow tracking URI a spec names, and its experiment, in a real sqlite store under tmp_path."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from raymlx.select import LeaderboardRow
from raymlx.tracking import (BASELINE_TAG, Session, SessionRuns, ensure_experiment, log_leaderboard,
                             resolve_tracking_uri, start_runs)


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


class _Trial:
    """What the MLflow callbacks read from a Tune trial."""

    error_file = None  # Tune's error file on the driver: none here, get_error() stands in

    def __init__(self, name: str, config: dict, last_result: dict | None = None) -> None:
        self.name, self.config, self.last_result = name, config, last_result or {}
        self.trial_id = name

    def __str__(self) -> str:
        return self.name

    def get_error(self) -> str:
        return "Traceback (most recent call last):\n  ...\nValueError: cannot fit this"


def _drive(callback, trials: list[tuple[_Trial, list[dict], bool]]) -> None:
    """The events Tune sends for trials that start together, report, then end (``failed``: Tune saw an error)."""
    callback.setup()
    for trial, _, _ in trials:
        callback.log_trial_start(trial)
    for trial, results, _ in trials:
        for i, result in enumerate(results, 1):
            callback.log_trial_result(i, trial, {**result, "training_iteration": i, "trial_id": "00001"})
    for trial, _, failed in trials:
        callback.log_trial_end(trial, failed=failed)


def _as_logged(uri: str, experiment_id: str, *, unless: tuple[str, ...] = ()) -> list:
    client = MlflowClient(uri)
    runs = client.search_runs([experiment_id])
    return sorted((r.info.run_name, r.info.status, r.data.params,
                   {k: sorted((m.step, m.value) for m in client.get_metric_history(r.info.run_id, k))
                    for k in r.data.metrics if k not in unless},
                   {k: v for k, v in r.data.tags.items() if not k.startswith(("mlflow.", "raymlx."))})
                  for r in runs)


def test_trial_runs_hold_what_rays_mlflow_callback_writes(store, monkeypatch):
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    from raymlx.tracking import start_runs
    from raymlx.trial_runs import TrialRunCallback

    uri, spec_dir = store
    events = [
        (_Trial("t1", {"model": "ridge", "params": {"alpha": 0.5, "solver": "auto"}}),
         [{"rmse": 3.0, "rmse_fold0": 2.5, "fit_time_s": 0.1, "note": "text", "nested": {"x": 1}},
          {"rmse": 2.0, "fit_time_s": 0.2}], False),
        (_Trial("t2", {"model": "tree", "params": {"max_depth": 3, "layers": [32, 16]}}),
         [{"rmse": 4.0, "fit_time_s": 0.3}], True),
    ]
    stock = ensure_experiment("stock", tracking_uri=uri, base_dir=spec_dir)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)  # Ray's callback would log there instead
    ours = ensure_experiment("batched", tracking_uri=uri, base_dir=spec_dir)
    _drive(MLflowLoggerCallback(tracking_uri=uri, experiment_name="stock"), events)
    session, parents = start_runs(MlflowClient(uri), ours, name="s", models=["ridge", "tree"])
    callback = TrialRunCallback(runs=SessionRuns(ours, session, parents), tracking_uri=uri)
    _drive(callback, events)
    assert callback.close() == []
    mine = [r for r in _as_logged(uri, ours) if r[0] in ("t1", "t2")]
    # Tune's random hex trial id is the one difference: Ray's callback logs it as a metric when all digits.
    assert mine == _as_logged(uri, stock, unless=("trial_id",))
    assert {k: len(v) for k, v in mine[0][3].items()}["rmse"] == 2  # both results, at steps 1 and 2


def test_trial_runs_nest_under_their_model_and_record_the_error(store):
    from raymlx.tracking import ERROR_TAG, MODEL_TAG, start_runs
    from raymlx.trial_runs import TrialRunCallback

    uri, spec_dir = store
    experiment_id = ensure_experiment("nested", tracking_uri=uri, base_dir=spec_dir)
    session, parents = start_runs(MlflowClient(uri), experiment_id, name="s", models=["ridge", "tree"])
    callback = TrialRunCallback(runs=SessionRuns(experiment_id, session, parents), tracking_uri=uri)
    _drive(callback, [(_Trial("ok", {"model": "ridge", "params": {}}), [{"rmse": 1.0}], False),
                      (_Trial("bad", {"model": "tree", "params": {}}), [], True)])
    assert callback.close() == []
    runs = {r.info.run_name: r for r in MlflowClient(uri).search_runs([experiment_id], "tags.`raymlx.role` = 'trial'")}
    assert runs["ok"].data.tags["mlflow.parentRunId"] == parents["ridge"]
    assert runs["bad"].data.tags["mlflow.parentRunId"] == parents["tree"]
    assert runs["bad"].data.tags[MODEL_TAG] == "tree"
    assert (runs["bad"].info.status, runs["bad"].data.tags[ERROR_TAG]) == ("FAILED", "ValueError: cannot fit this")
    assert (runs["ok"].info.status, ERROR_TAG in runs["ok"].data.tags) == ("FINISHED", False)


def test_a_failed_write_is_returned_and_the_writes_after_it_still_happen(store):
    from raymlx.tracking import start_runs
    from raymlx.trial_runs import TrialRunCallback

    uri, spec_dir = store
    experiment_id = ensure_experiment("failed-write", tracking_uri=uri, base_dir=spec_dir)
    session, parents = start_runs(MlflowClient(uri), experiment_id, name="s", models=["ridge"])
    callback = TrialRunCallback(runs=SessionRuns(experiment_id, session, parents), tracking_uri=uri)
    callback.setup()
    trial = _Trial("t", {"model": "ridge", "params": {"alpha": 1.0}})
    callback.log_trial_start(trial)
    callback.log_trial_end(_Trial("never-started", {"model": "ridge", "params": {}}))
    callback.log_trial_result(1, trial, {"rmse": 1.5, "training_iteration": 1})
    callback.log_trial_end(trial)
    errors = callback.close()
    assert [type(e) for e in errors] == [KeyError]
    (run,) = MlflowClient(uri).search_runs([experiment_id], "tags.`raymlx.role` = 'trial'")
    assert (run.info.status, run.data.metrics["rmse"], run.data.params["params/alpha"]) == ("FINISHED", 1.5, "1.0")


def test_trials_start_before_the_session_runs_exist_and_are_written_under_them_once_they_do(store):
    from concurrent.futures import Future

    from raymlx.tracking import start_runs
    from raymlx.trial_runs import TrialRunCallback

    uri, spec_dir = store
    experiment_id = ensure_experiment("opening", tracking_uri=uri, base_dir=spec_dir)
    opening = Future()
    callback = TrialRunCallback(runs=opening, tracking_uri=uri)
    callback.setup()
    trial = _Trial("early", {"model": "ridge", "params": {"alpha": 1.0}})
    callback.log_trial_start(trial)
    started_ms = int(time.time() * 1000)
    callback.log_trial_result(1, trial, {"rmse": 1.5, "training_iteration": 1})
    time.sleep(0.3)  # the session opens later than the trial starts
    session, parents = start_runs(MlflowClient(uri), experiment_id, name="s", models=["ridge"])
    opening.set_result(SessionRuns(experiment_id, session, parents))
    callback.log_trial_end(trial)
    assert callback.close() == []
    (run,) = MlflowClient(uri).search_runs([experiment_id], "tags.`raymlx.role` = 'trial'")
    assert run.data.tags["mlflow.parentRunId"] == parents["ridge"] and run.data.tags["raymlx.session"] == session
    assert (run.info.status, run.data.metrics["rmse"]) == ("FINISHED", 1.5)
    assert run.info.start_time <= started_ms  # when Tune started it, not when the write could happen


def test_when_the_session_runs_cannot_open_the_next_trial_start_raises_their_error(store):
    from concurrent.futures import Future

    from raymlx.trial_runs import TrialRunCallback

    uri, _ = store
    opening = Future()
    callback = TrialRunCallback(runs=opening, tracking_uri=uri)
    callback.setup()
    callback.log_trial_start(_Trial("first", {"model": "ridge", "params": {}}))  # still opening: no error yet
    opening.set_exception(ConnectionError("tracking server unreachable"))
    with pytest.raises(ConnectionError, match="tracking server unreachable"):
        callback.log_trial_start(_Trial("second", {"model": "ridge", "params": {}}))
    assert [type(e) for e in callback.close()] == [ConnectionError]


def test_a_resumed_session_writes_each_trial_to_the_run_it_had(store):
    """Before: "a" finished, "b" was cut short (KILLED), "c" ran after Tune's last save. Resumed, Tune
    restores "a" and "b" and its searcher suggests c's configuration again under a new id: three runs, not five."""
    from raymlx.tracking import start_runs
    from raymlx.trial_runs import TrialRunCallback

    uri, spec_dir = store
    experiment_id = ensure_experiment("resumed", tracking_uri=uri, base_dir=spec_dir)
    session, parents = start_runs(MlflowClient(uri), experiment_id, name="s", models=["ridge"])
    runs = SessionRuns(experiment_id, session, parents)
    a, b, c = (_Trial(n, {"model": "ridge", "params": {"alpha": i}}) for i, n in enumerate("abc"))
    before = TrialRunCallback(runs=runs, tracking_uri=uri)
    before.setup()
    for trial in (a, b, c):
        before.log_trial_start(trial)
    for trial in (a, c):
        before.log_trial_result(1, trial, {"rmse": 1.0, "training_iteration": 1})
        before.log_trial_end(trial)
    assert before.close() == []
    assert {r.info.run_name: r.info.status for r in MlflowClient(uri).search_runs([experiment_id])}["b"] == "KILLED"
    after = TrialRunCallback(runs=runs, tracking_uri=uri, resume=True)
    after.setup()
    after.on_step_begin(0, [a, b])  # what Tune's saved state held
    c_again = _Trial("c2", dict(c.config))
    for trial in (b, c_again):
        after.log_trial_start(trial)
        after.log_trial_result(1, trial, {"rmse": 2.0, "training_iteration": 1})
        after.log_trial_end(trial)
    assert after.close() == []
    found = MlflowClient(uri).search_runs([experiment_id], "tags.`raymlx.role` = 'trial'")
    assert sorted((r.info.run_name, r.info.status, r.data.tags["raymlx.trial_id"]) for r in found) == [
        ("a", "FINISHED", "a"), ("b", "FINISHED", "b"), ("c", "FINISHED", "c2")]


def test_a_run_killed_before_its_parameters_were_written_is_its_trials_run_again(store):
    """SIGKILL between a trial run's creation and the write of its parameters leaves a run with none. Resumed
    with Tune's saved state lacking that trial, its configuration comes back under a new id and gets that
    run again: one run per configuration, none left KILLED."""
    from raymlx.tracking import start_runs
    from raymlx.trial_runs import TrialRunCallback

    uri, spec_dir = store
    client = MlflowClient(uri)
    experiment_id = ensure_experiment("bare", tracking_uri=uri, base_dir=spec_dir)
    session, parents = start_runs(client, experiment_id, name="s", models=["ridge", "lasso"])
    runs = SessionRuns(experiment_id, session, parents)
    a = _Trial("a", {"model": "ridge", "params": {"alpha": 0}})
    before = TrialRunCallback(runs=runs, tracking_uri=uri)
    before.setup()
    before.log_trial_start(a)
    before.log_trial_result(1, a, {"rmse": 1.0, "training_iteration": 1})
    before.log_trial_end(a)
    assert before.close() == []
    (logged,) = client.search_runs([experiment_id], "tags.`raymlx.role` = 'trial'")
    for name, model in (("b", "ridge"), ("x", "lasso")):  # created, then the process was gone
        tags = {**logged.data.tags, "raymlx.trial_id": name, "raymlx.model": model, "mlflow.runName": name,
                "mlflow.parentRunId": parents[model]}
        client.set_terminated(client.create_run(experiment_id, tags=tags, run_name=name).info.run_id, "KILLED")
    after = TrialRunCallback(runs=runs, tracking_uri=uri, resume=True)
    after.setup()
    after.on_step_begin(0, [a])  # what Tune's saved state held
    b_again = _Trial("b2", {"model": "ridge", "params": {"alpha": 1}})
    after.log_trial_start(b_again)
    after.log_trial_result(1, b_again, {"rmse": 2.0, "training_iteration": 1})
    after.log_trial_end(b_again)
    assert after.close() == []
    found = {r.info.run_name: r for r in client.search_runs([experiment_id], "tags.`raymlx.role` = 'trial'")}
    assert sorted(found) == ["a", "b", "x"]  # b's configuration took b's run, not the other model's x
    assert (found["b"].info.status, found["b"].data.tags["raymlx.trial_id"]) == ("FINISHED", "b2")
    assert (found["b"].data.params["model"], found["b"].data.params["params/alpha"]) == ("ridge", "1")
    assert found["x"].info.status == "KILLED"


def test_the_leaderboard_lands_on_each_model_s_parent_run_and_the_table_on_the_session_run(store):
    uri, spec_dir = store
    experiment_id = ensure_experiment("board", tracking_uri=uri, base_dir=spec_dir)
    client = MlflowClient(uri)
    session_id, parents = start_runs(client, experiment_id, name="board", models=["wide", "baseline", "failed"])
    wide = {f"p{i:03d}": i for i in range(150)}  # more parameters than one of MLflow's batches holds
    board = [LeaderboardRow("wide", 0.9, 0.01, wide, trials=12, failed=1, wall_time_s=3.5, skill=0.25),
             LeaderboardRow("baseline", 0.7, 0.02, {"strategy": "mean"}, 1, 0, 0.1, baseline=True),
             LeaderboardRow("failed", math.nan, math.nan, {}, 4, 4, 0.2)]
    log_leaderboard(Session(experiment_id, session_id, parents, uri), board, "accuracy")
    runs = {name: client.get_run(run_id).data for name, run_id in parents.items()}
    assert runs["wide"].params == {f"best.{k}": str(v) for k, v in wide.items()}
    assert runs["wide"].metrics == {"best_accuracy": 0.9, "best_accuracy_std": 0.01, "skill_vs_baseline": 0.25,
                                    "trials": 12, "trials_failed": 1, "wall_time_s": 3.5}
    assert BASELINE_TAG not in runs["wide"].tags and runs["baseline"].tags[BASELINE_TAG] == "auto"
    assert runs["baseline"].params == {"best.strategy": "mean"}
    assert runs["failed"].metrics == {"trials": 4, "trials_failed": 4, "wall_time_s": 0.2} and not runs["failed"].params
    table = client.download_artifacts(session_id, "leaderboard.csv", str(spec_dir))
    assert [line.split(",")[0] for line in Path(table).read_text().splitlines()[1:]] == ["wide", "baseline", "failed"]
