"""The child run of every trial, written by a Tune callback on the driver."""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor

from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from ray.air.constants import TRAINING_ITERATION
from ray.air.integrations.mlflow import MLflowLoggerCallback
from ray.tune.result import TIMESTEPS_TOTAL
from ray.tune.utils import flatten_dict

from raymlx import _compat
from raymlx._result import DRIVER_TRIAL_KEY, PREDICTIONS_KEY, error_summary, failure_of
from raymlx.recovery import trial_runs_of
from raymlx.tracking import ERROR_TAG, MODEL_TAG, ROLE_TAG, SESSION_TAG, TRIAL_ID_TAG, SessionRuns

__all__ = ["TrialRunCallback", "EVALUATED_ON_TAG"]

EVALUATED_ON_TAG = "raymlx.evaluated_on"  # "driver" on the run of a trial the driver evaluated while Ray started


class TrialRunCallback(MLflowLoggerCallback):
    """``MLflowLoggerCallback`` whose trial runs nest under their model's parent run, written in batches off Tune's loop.

    Ray's callback writes every parameter and metric as a request of its own and checks that the
    run exists before each: about 170 ms a trial on sqlite, spent inside Tune's loop while the
    trial's worker waits for its next configuration. Here a trial is four requests (create the run,
    its parameters, its metrics, its end), made in order by one writer thread, and the times are
    taken when Tune reports the events. The same runs, tags, parameters and metrics are written.
    :meth:`close` waits for every write and returns the ones that failed.

    ``runs`` may still be opening (a future) when Tune starts: the writes wait for it, and the next
    trial to start raises its error, which ends the tuning. With ``resume``, the session's runs are
    an earlier run's: a trial Tune starts again writes to the run it had (found by its trial id),
    so a configuration never gets two runs. Trials still running when Tune stops (an interruption)
    are closed as KILLED by :meth:`close`.
    """

    def __init__(self, *, runs: SessionRuns | Future, resume: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.runs = runs
        self.resume = resume
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="raymlx-mlflow")
        self._writes: list[Future] = []

    def __getstate__(self) -> dict:
        # Tune pickles its run configuration, callbacks included; the writer thread and a pending future stay behind.
        runs = self.runs if isinstance(self.runs, SessionRuns) else None
        return {**self.__dict__, "runs": runs, "_writer": None, "_writes": [], "_client": None, "_open": set()}

    def setup(self, *args, **kwargs) -> None:
        # Runs go to the experiment by id: the parent class would take $MLFLOW_EXPERIMENT_ID first, which
        # mlflow.set_experiment leaves behind, and log to whatever experiment ran last in this process.
        self.tags = self.tags or {}
        self._trial_runs = {}
        self._client: MlflowClient | None = None  # made by the writer once the session's runs exist (a second's load)
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="raymlx-mlflow")
        self._writes = []
        self._earlier: dict[str, str] | None = None if self.resume else {}  # trial id -> run id, read once
        self._spare: dict[tuple, list[str]] = {}  # (model, configuration) -> runs of trials Tune's saved state lacks
        self._restored: set[str] | None = None  # ids of the trials Tune restored
        self._open: set = set()  # trials started and not ended

    def on_step_begin(self, iteration: int, trials: list, **info) -> None:
        if self._restored is None:  # Tune's first step: the trials it holds are the restored ones
            self._restored = {t.trial_id for t in trials}

    def log_trial_start(self, trial) -> None:
        if isinstance(self.runs, Future) and self.runs.done():
            self.runs.result()  # the session's runs could not be opened: stop here, not after every trial
        tags = {**(self.tags or {}), ROLE_TAG: "trial", MODEL_TAG: trial.config["model"], "trial_name": str(trial),
                TRIAL_ID_TAG: trial.trial_id}
        # Evaluated by the driver while Ray started: its run keeps those times (a resumed session evaluates again).
        evaluated = None if self.resume else trial.config.get(DRIVER_TRIAL_KEY)
        if evaluated:
            tags[EVALUATED_ON_TAG] = "driver"
        config = {k: v for k, v in trial.config.items() if k != DRIVER_TRIAL_KEY}
        params = [Param(k, str(v)) for k, v in flatten_dict(config).items()]
        self._open.add(trial)
        self._submit(self._start_run, trial, tags, params, evaluated["started_ms"] if evaluated else _now_ms())

    def log_trial_result(self, iteration: int, trial, result: dict) -> None:
        # Tune's trial id is random hex: an all-digit one would be logged as a "metric".
        # Predictions (the report's out-of-fold rows) are no metric, nor is the driver's evaluation marker.
        values = _compat.mlflow_metrics(self.mlflow_util, flatten_dict({k: v for k, v in result.items()
                                                                        if k not in ("trial_id", PREDICTIONS_KEY)}))
        values = {k: v for k, v in values.items() if not k.startswith(f"config/{DRIVER_TRIAL_KEY}/")}
        step = result.get(TIMESTEPS_TOTAL) or result[TRAINING_ITERATION]
        now = _now_ms()
        self._submit(self._log, trial, [Metric(k, v, now, step) for k, v in values.items()], [])

    def log_trial_end(self, trial, failed: bool = False) -> None:
        error = failure_of(trial.last_result) or (error_summary(trial) if failed else None)
        self._open.discard(trial)
        evaluated = None if self.resume else trial.config.get(DRIVER_TRIAL_KEY)
        self._submit(self._end_run, trial, error, evaluated["ended_ms"] if evaluated else _now_ms())

    def flushed(self) -> Future:
        """A future done once every write asked for so far is done (the writer keeps their order)."""
        return self._writer.submit(lambda: None)

    def close(self) -> list[BaseException]:
        """Close the runs of trials that never ended as KILLED, wait for every write; the errors of those that failed."""
        for trial in list(self._open):
            self._submit(self._kill_run, trial, _now_ms())
        self._open.clear()
        if self._writer is not None:
            self._writer.shutdown(wait=True)
        errors = [error for error in (f.exception() for f in self._writes) if error is not None]
        self._writes = []
        return errors

    def _submit(self, write, *args) -> None:
        self._writes.append(self._writer.submit(write, *args))

    def _start_run(self, trial, tags: dict[str, str], params: list[Param], started_ms: int) -> None:
        if trial not in self._trial_runs:
            runs = self.runs.result() if isinstance(self.runs, Future) else self.runs
            earlier = self._earlier_runs(runs).get(trial.trial_id) or self._spare_run(tags[MODEL_TAG], params)
            if earlier is not None:  # started before an interruption: the same run again
                self._mlflow().update_run(earlier, status="RUNNING")
                self._mlflow().set_tag(earlier, TRIAL_ID_TAG, trial.trial_id)
                self._trial_runs[trial] = earlier
            else:
                tags = {**tags, SESSION_TAG: runs.session_id, "mlflow.parentRunId": runs.parents[tags[MODEL_TAG]]}
                run = self._mlflow().create_run(runs.experiment_id, start_time=started_ms, tags=tags,
                                                run_name=str(trial))
                self._trial_runs[trial] = run.info.run_id
        self._log(trial, [], params)

    def _earlier_runs(self, runs: SessionRuns) -> dict[str, str]:
        """The session's trial runs by trial id; those of trials Tune's saved state lacks (Tune saves every
        ten seconds or so: after a SIGKILL, its searcher suggests them again under new ids) by configuration."""
        if self._earlier is None:
            found = trial_runs_of(self._mlflow(), runs)
            self._earlier = {r.data.tags[TRIAL_ID_TAG]: r.info.run_id for r in found}
            for run in found:
                if run.data.tags[TRIAL_ID_TAG] not in (self._restored or set()):
                    key = (run.data.tags.get(MODEL_TAG), tuple(sorted(run.data.params.items())))
                    self._spare.setdefault(key, []).append(run.info.run_id)
        return self._earlier

    def _spare_run(self, model: str, params: list[Param]) -> str | None:
        """An earlier run of this configuration, else one of the model's runs killed before its parameters
        were written (created, then the process was gone): either is this trial's run again."""
        for key in ((model, tuple(sorted((p.key, p.value) for p in params))), (model, ())):
            if spare := self._spare.get(key):
                return spare.pop(0)
        return None

    def _mlflow(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(self.tracking_uri, self.registry_uri)
        return self._client

    def _log(self, trial, metrics: list[Metric], params: list[Param]) -> None:
        run_id = self._trial_runs[trial]
        for i in range(0, len(params), _compat.MAX_PARAMS_PER_BATCH):
            self._mlflow().log_batch(run_id, params=params[i:i + _compat.MAX_PARAMS_PER_BATCH])
        for i in range(0, len(metrics), _compat.MAX_METRICS_PER_BATCH):
            self._mlflow().log_batch(run_id, metrics=metrics[i:i + _compat.MAX_METRICS_PER_BATCH])

    def _end_run(self, trial, error: str | None, ended_ms: int) -> None:
        run_id = self._trial_runs[trial]
        if error is not None:
            self._mlflow().set_tag(run_id, ERROR_TAG, error)
        self._mlflow().set_terminated(run_id, status="FAILED" if error is not None else "FINISHED", end_time=ended_ms)

    def _kill_run(self, trial, ended_ms: int) -> None:
        if trial in self._trial_runs:
            self._mlflow().set_terminated(self._trial_runs[trial], status="KILLED", end_time=ended_ms)


def _now_ms() -> int:
    return int(time.time() * 1000)
