"""Out-of-fold predictions on the driver: only each model's best trial keeps them.

Every trial reports its predictions of every validation row (the report's out-of-fold
predictions); Tune keeps each trial's last result and writes it to its JSON files. On a large
data set that would grow with trials x rows, so the predictions of a trial that scored worse than
its model's best so far are dropped as its result arrives, and those of an earlier best once a
better one comes; Tune's per-trial ``result.json`` is written without them.
"""

from __future__ import annotations

import math
from typing import Any

from ray.tune import Callback
from ray.tune.logger import JsonLoggerCallback

from raymlx._result import PREDICTIONS_KEY, failure_of

__all__ = ["KeepBestPredictions", "ResultJsonLogger"]


class KeepBestPredictions(Callback):
    """Drop the predictions of every result that is not its model's best so far (ties keep theirs).

    Tune lets a callback change a result in place before it becomes the trial's last result.
    """

    def __init__(self, *, metric: str, mode: str) -> None:
        self.metric, self.mode = metric, mode
        self._best: dict[str, tuple[float, list[Any]]] = {}  # model -> best score, trials holding it

    def __getstate__(self) -> dict:
        # Saved with Tune's experiment state: the trials are Tune's, restored on their own.
        return {"metric": self.metric, "mode": self.mode, "_best": {}}

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        score = result.get(self.metric)
        if PREDICTIONS_KEY not in result:
            return
        if failure_of(result) is not None or score is None or math.isnan(score):
            result.pop(PREDICTIONS_KEY)
            return
        model = trial.config["model"]
        best, holders = self._best.get(model, (math.nan, []))
        if math.isnan(best) or (score < best if self.mode == "min" else score > best):
            for earlier in holders:
                if earlier is not trial:
                    (earlier.last_result or {}).pop(PREDICTIONS_KEY, None)
            self._best[model] = (score, [trial])
        elif score == best:
            holders.append(trial)
        else:
            result.pop(PREDICTIONS_KEY)


class ResultJsonLogger(JsonLoggerCallback):
    """Tune's ``result.json`` writer, leaving out the predictions (the MLflow runs and the report hold what counts)."""

    def log_trial_result(self, iteration: int, trial, result: dict) -> None:
        super().log_trial_result(iteration, trial, {k: v for k, v in result.items() if k != PREDICTIONS_KEY})
