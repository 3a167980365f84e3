"""A run's head start: the folds, their features, each model's search, and the first trial on the driver while Ray starts.

Ray's local runtime takes seconds to start on a small machine, and Tune's first trial workers seconds more
to import what a trial needs. The driver has the data and scikit-learn in hand by then, so it evaluates the
first configuration itself, in a thread, while Ray starts and Tune's workers import. It is a real trial: the
search is told its result, and Tune's next trial is given its configuration and reports that result instead
of fitting it again, so it gets its MLflow child run (started and ended when the driver evaluated it,
tagged ``raymlx.evaluated_on=driver``), the same leaderboard entry and the same count as any other trial.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable

import pandas as pd

from ray.tune import Callback

from raymlx._result import DRIVER_TRIAL_KEY
from raymlx.defaults import prepare
from raymlx.features import compute_fold_features
from raymlx.folds import Fold, make_folds
from raymlx.metrics import Metric, get_metric
from raymlx.search import ModelSearcher, model_searcher
from raymlx.spec_io import LoadedSpec
from raymlx.trainable import ModelPlan, TrialContext, attempt

__all__ = ["HeadStart", "head_start", "DriverTrials", "phase"]

logger = logging.getLogger(__name__)

# Trials the driver evaluates at most: each one more shares the driver's interpreter with MLflow's import and
# Tune's start, and may run beside the first workers' fits (see README, "The first trial").
_ON_DRIVER = 1


@dataclass(frozen=True)
class HeadStart:
    """What the driver prepared before tuning: the spec with its automatic baseline, the folds and their
    features, the metric, each model's search (multiplexed in ``searcher``) and the trials' context, with
    the results of the trials it evaluated itself."""

    loaded: LoadedSpec
    folds: list[Fold]
    baseline: str | None
    features: dict[str | None, list]
    metric: Metric
    budgets: dict[str, int]
    searcher: ModelSearcher
    context: TrialContext
    driver: DriverTrials  # the trials evaluated on the driver (none when it evaluates none)


@contextmanager
def phase(name: str):
    """Log how long a phase of the experiment took (shown with --verbose)."""
    started = time.perf_counter()
    yield
    logger.info("%s: %.2f s", name, time.perf_counter() - started)


def head_start(loaded: LoadedSpec, frame: pd.DataFrame, *, trials_on_driver: bool,
               ray_ready: Callable[[], bool] | None = None) -> HeadStart:
    """Compute the folds and features, make each model's search, and start evaluating first trials on the driver.

    Args:
        loaded: The validated spec.
        frame: The data set, as :func:`raymlx.checks.validate` returned it.
        trials_on_driver: Evaluate first trials here (a local runtime's start, not a resumed session, which
            continues Tune's own trials); never when a model asks for a GPU or ``runtime.trials_on_driver``
            is false.
        ray_ready: Asked after each fold whether Ray is up, to move the folds computed from then on into
            its object store at once (see :func:`raymlx.features.compute_fold_features`).

    Raises:
        PipelineFailed: A pipeline step raised.
    """
    metric = get_metric(loaded.spec.metric_spec.name, loaded.spec.metric_spec.mode, base_dir=loaded.base_dir)
    with phase("fold features"):
        folds = make_folds(frame, loaded.spec)
        loaded, baseline = prepare(loaded, folds)
        features = compute_fold_features(loaded.spec, frame, folds, base_dir=loaded.base_dir, ray_ready=ray_ready)
    spec = loaded.spec
    searches = {name: model_searcher(m.search, metric=metric.name, mode=metric.mode) for name, m in spec.models.items()}
    searcher = ModelSearcher(searches, metric=metric.name, mode=metric.mode)
    plans = {name: ModelPlan(m.model, m.pipeline, dict(m.params), m.max_failures) for name, m in spec.models.items()}
    on_driver = trials_on_driver and spec.runtime.trials_on_driver and not any(m.resources.gpu
                                                                              for m in spec.models.values())
    context = TrialContext(plans, features, spec.metric_spec.name, metric.mode, loaded.base_dir,
                           results_on_driver=on_driver,
                           keep_predictions=spec.report.enabled)  # only the report reads the predictions
    driver = DriverTrials(searcher, context, limit=_ON_DRIVER if on_driver else 0)
    return HeadStart(loaded, folds, baseline, features, metric, {n: b for n, (_, b) in searches.items()}, searcher,
                     context, driver)


class DriverTrials(Callback):
    """Evaluates configurations of the search on the driver, in a thread of its own, from when the features
    exist until a trial in Tune's workers reports (``limit`` at most); as a Tune callback, first in the list,
    it puts each one's result into the result its Tune trial reports (which fits nothing).

    It is in the list even when it evaluates nothing: Tune restores its callbacks' saved states by position.
    """

    def __init__(self, searcher: ModelSearcher, context: TrialContext, *, limit: int) -> None:
        self.results: dict[int, dict[str, Any]] = {}
        self._searcher, self._context, self._limit = searcher, context, limit
        self._stop = threading.Event()
        if limit:
            threading.Thread(target=self._evaluate, name="raymlx-driver-trials", daemon=True).start()

    def __getstate__(self) -> dict:
        return {}  # Tune saves its callbacks with the run: the results stay here

    def stop(self) -> None:
        """Start no more evaluations; the one under way ends (its Tune trial waits for it)."""
        self._stop.set()

    def _evaluate(self) -> None:
        while len(self.results) < self._limit and not self._stop.is_set():
            index = len(self.results)
            trial_id = f"driver_{index}"
            config = self._searcher.suggest_new(trial_id)
            if not isinstance(config, dict):
                return  # every budget is spent, or the searches wait for results
            started = time.time()
            try:
                result = attempt(self._context, config["model"], config["params"])
            except BaseException:  # beyond a failed fit (that is a failed trial): Tune's workers evaluate it
                self._searcher.release(trial_id)
                raise
            ended = time.time()
            self.results[index] = result
            self._searcher.evaluated(trial_id, config, result, seconds=ended - started, marker={
                "index": index, "started_ms": int(started * 1000), "ended_ms": int(ended * 1000)})
            logger.info("trial %d of %s evaluated on the driver in %.2f s", index, config["model"], ended - started)

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        evaluated = trial.config.get(DRIVER_TRIAL_KEY)
        if evaluated and evaluated["index"] in self.results:
            result.update(self.results[evaluated["index"]])
        elif not evaluated:
            self.stop()  # Tune's workers are up: the rest of the trials are theirs
