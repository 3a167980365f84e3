"""A Tune callback on the driver that says when a model's trials have all ended, while other models may still tune."""

from __future__ import annotations

import logging
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import ray
from ray.tune import Callback

from raymlx.select import LeaderboardRow, build_leaderboard
from raymlx.spec import Spec
from raymlx.tracking import SessionRuns

__all__ = ["ModelEnded", "ModelEndCallback"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelEnded:
    """A model whose trials have all ended and whose trial runs are written to MLflow.

    Attributes:
        row: Its best trial and counts, as the leaderboard will show them (no skill: other models still tune).
        runs: The session's MLflow runs (its parent run is ``runs.parents[row.model]``).
        spec: The spec as tuned (seeds filled in, the baseline's entry added).
        features: Its pipeline's features on every fold, as its trials saw them.
    """

    row: LeaderboardRow
    runs: SessionRuns
    spec: Spec
    features: list


class _Ended(NamedTuple):
    """An ended trial as :func:`raymlx.select.build_leaderboard` reads a Tune result."""

    config: dict
    metrics: dict
    error: str | None


class ModelEndCallback(Callback):
    """Calls ``hook`` with a :class:`ModelEnded` once all of a model's ``budgets[name]`` trials have ended.

    The hook runs once ``flushed()`` (a future done when the trial runs written so far are in MLflow)
    is done, on whichever thread completes it: it should hand its work elsewhere and return. A hook
    that raises is logged, never stops the tuning.
    """

    def __init__(self, budgets: dict[str, int], *, hook: Callable[[ModelEnded], Any], flushed: Callable[[], Future],
                 runs: SessionRuns | Future, spec: Spec, features: dict[str | None, list], metric: str,
                 mode: str) -> None:
        self.budgets, self.hook, self.flushed, self.runs = budgets, hook, flushed, runs
        self.spec, self.features, self.metric, self.mode = spec, features, metric, mode
        self._ended: dict[str, dict[str, _Ended]] = {name: {} for name in budgets}

    def __getstate__(self) -> dict:
        # Tune pickles its run configuration, callbacks included, into its saved state. A restored session
        # draws its sections after the run, so none of this is needed there; and the spec may name a
        # tracking server with credentials, which must never be written to disk.
        return {**self.__dict__, "hook": None, "flushed": None, "runs": None, "spec": None, "features": None,
                "_ended": {}}

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._end(trial, error=None)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._end(trial, error="error")

    def _end(self, trial, error: str | None) -> None:
        name = trial.config["model"]
        ended = self._ended[name]
        ended[trial.trial_id] = _Ended(trial.config, trial.last_result or {}, error)
        if len(ended) == self.budgets[name] and self.hook is not None:
            row = build_leaderboard(list(ended.values()), models=[name], metric=self.metric, mode=self.mode,
                                    wall_times={})[0]
            self.flushed().add_done_callback(lambda _: self._call(row))

    def _call(self, row: LeaderboardRow) -> None:
        try:
            runs = self.runs.result() if isinstance(self.runs, Future) else self.runs
            folds = self.features[self.spec.models[row.model].pipeline]
            # the folds live in Ray's object store while tuning (read in place, not copied)
            features = [ray.get(f) if isinstance(f, ray.ObjectRef) else f for f in folds]
            self.hook(ModelEnded(row, runs, self.spec, features))
        except Exception:  # the session's runs failed to open (the tuning says so) or the hook failed
            logger.warning("the hook on the end of %s's trials failed", row.model, exc_info=True)
