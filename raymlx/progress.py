"""Per-model progress of a running experiment, kept by a Tune callback on the driver."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

from ray.tune import Callback

from raymlx._result import error_summary, failure_of

__all__ = ["ModelProgress", "ProgressCallback"]


@dataclass
class ModelProgress:
    """Trials of one model: how many ran, failed, are running; the best score so far; wall time."""

    name: str
    budget: int
    done: int = 0
    failed: int = 0
    running: int = 0
    best: float = math.nan
    started_at: float | None = None
    ended_at: float | None = None
    last_error: str | None = None
    earlier_s: float = 0.0  # wall time before an interruption, when resumed

    @property
    def wall_time_s(self) -> float:
        if self.started_at is None:
            return self.earlier_s
        return self.earlier_s + (self.ended_at or time.time()) - self.started_at


class ProgressCallback(Callback):
    """Counts each model's trials as Tune starts and ends them, and calls ``on_update`` after each change.

    With ``retries``, a trial whose worker process dies (killed, out of memory) starts again in a
    new one, up to its model's count (Tune's per-trial ``max_failures``).
    """

    def __init__(self, budgets: dict[str, int], *, metric: str, mode: str,
                 on_update: Callable[[dict[str, ModelProgress]], None] | None = None,
                 retries: dict[str, int] | None = None) -> None:
        self.models = {name: ModelProgress(name, budget) for name, budget in budgets.items()}
        self.metric, self.mode, self.on_update = metric, mode, on_update
        self.retries = retries or {}

    def __getstate__(self) -> dict:
        # Tune saves callbacks with the experiment state; the display hook stays behind.
        return {**self.__dict__, "on_update": None}

    def get_state(self) -> dict:
        """Counts so far, saved by Tune with its experiment state: a resumed run counts on from them."""
        return {name: {"done": p.done, "failed": p.failed, "best": p.best, "last_error": p.last_error,
                       "earlier_s": p.wall_time_s} for name, p in self.models.items()}

    def set_state(self, state: dict) -> None:
        for name, saved in state.items():
            if name in self.models:
                vars(self.models[name]).update(saved)

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        trial.max_failures = self.retries.get(trial.config["model"], 0)
        progress = self.models[trial.config["model"]]
        progress.running += 1
        progress.started_at = progress.started_at or time.time()
        self._changed()

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        progress = self._finish(trial)
        error = failure_of(trial.last_result)
        if error is not None:
            progress.failed += 1
            progress.last_error = error
        value = (trial.last_result or {}).get(self.metric)
        if value is not None and (math.isnan(progress.best) or
                                  (value < progress.best if self.mode == "min" else value > progress.best)):
            progress.best = value
        self._changed()

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        progress = self._finish(trial)
        progress.failed += 1
        progress.last_error = error_summary(trial)
        self._changed()

    def _finish(self, trial) -> ModelProgress:
        progress = self.models[trial.config["model"]]
        progress.running -= 1
        progress.done += 1
        progress.ended_at = time.time()
        return progress

    def _changed(self) -> None:
        if self.on_update is not None:
            self.on_update(self.models)
