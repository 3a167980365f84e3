"""Out-of-fold predictions of a model's best configuration: the ones its best trial made.

Every diagnostic is drawn from these, so the charts show the rows the leaderboard scored.
Each trial reports its predictions of every fold's validation rows with its scores (see
:data:`raymlx._result.PREDICTIONS_KEY`), so the best trial's need no refit; they are joined
here to the fold features' row labels and true values. Explanations need a fitted model: the
best configuration is fitted again on the last fold only.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from raymlx.pipeline import FoldData

__all__ = ["oof_frame", "fit_last", "PROBA_PREFIX"]

PROBA_PREFIX = "proba:"


def _fold_rows(kept: dict[str, Any], fold: FoldData, index: int, *, task: str) -> pd.DataFrame:
    rows = pd.DataFrame({"fold": index, "y_true": fold.y_valid.to_numpy(), "y_pred": kept["y_pred"][index]})
    if task == "forecasting":
        rows.insert(1, "time", fold.X_valid.index)
        rows.insert(2, "step", np.arange(1, len(rows) + 1))
    else:
        rows.insert(1, "row", fold.X_valid.index)
    if kept.get("proba"):
        proba = np.asarray(kept["proba"][index], dtype=float)
        for position, label in enumerate(kept["classes"]):
            rows[f"{PROBA_PREFIX}{label}"] = proba[:, position]
    return rows


def oof_frame(kept: dict[str, Any], folds: list[FoldData], *, task: str) -> pd.DataFrame:
    """One row per validation row of every fold: fold, row label (or time and step), truth, prediction, probabilities.

    Args:
        kept: The best trial's predictions (``y_pred`` per fold; a classifier's ``proba`` and ``classes``).
        folds: The features the trial saw, fold by fold.
        task: ``regression``, ``classification`` or ``forecasting``.

    Raises:
        ValueError: When the predictions do not match the folds (another fold plan or data).
    """
    if len(kept.get("y_pred", [])) != len(folds):
        raise ValueError(f"the best trial kept predictions of {len(kept.get('y_pred', []))} folds, "
                         f"but the experiment has {len(folds)}")
    return pd.concat([_fold_rows(kept, fold, i, task=task) for i, fold in enumerate(folds)], ignore_index=True)


def fit_last(make_model: Callable[[], Any], folds: list[FoldData], *, cpus: float = 1) -> tuple[Any, float]:
    """The best configuration fitted on the last fold's training rows (the one explained), and the seconds it took.

    Native thread pools are held to the trial's CPUs, as in a trial: an estimator that would
    spread over every core of a busy machine is slower, not faster.
    """
    started = time.perf_counter()
    with threadpool_limits(limits=max(1, int(cpus))):
        model = make_model()
        model.fit(folds[-1].X_train, folds[-1].y_train)
    return model, time.perf_counter() - started
