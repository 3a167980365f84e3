"""The fold plan: made once per experiment and used by every model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold, StratifiedKFold, TimeSeriesSplit, train_test_split

from raymlx.errors import DataError
from raymlx.spec import Spec

__all__ = ["Fold", "make_folds", "fold_plan"]


@dataclass(frozen=True)
class Fold:
    """Row positions of one fold's training and validation parts.

    For forecasting, ``cutoff`` is the last time known when the window is predicted
    and ``valid`` is the ``horizon`` rows after it.
    """

    index: int
    train: np.ndarray
    valid: np.ndarray
    cutoff: pd.Timestamp | None = None


def make_folds(frame: pd.DataFrame, spec: Spec) -> list[Fold]:
    """Split the frame into the experiment's folds.

    Raises:
        DataError: When the data has too few rows for the plan.
    """
    strategy, v = spec.strategy, spec.validation
    if strategy != "holdout" and v.folds < 2:
        raise DataError(f"{strategy} needs at least 2 folds, but got (folds={v.folds}); use holdout for one split")
    try:
        return _split(frame, spec)
    except ValueError as exc:  # scikit-learn's own limits, e.g. a class with too few members
        raise DataError(f"cannot make the {strategy} folds: {exc}") from None


def _split(frame: pd.DataFrame, spec: Spec) -> list[Fold]:
    strategy, v, n = spec.strategy, spec.validation, len(frame)
    y = frame[spec.data.target]
    if strategy in ("expanding_window", "sliding_window"):
        horizon = v.horizon or 1
        if n <= horizon * v.folds:
            raise DataError(f"{n} rows are too few for {v.folds} folds of horizon {horizon}: "
                            f"need more than {horizon * v.folds}")
        window = v.window if strategy == "sliding_window" else None
        splitter = TimeSeriesSplit(n_splits=v.folds, test_size=horizon, max_train_size=window)
        return [Fold(i, tr, va, frame.index[tr[-1]] if spec.task == "forecasting" else None)
                for i, (tr, va) in enumerate(splitter.split(frame))]
    stratify = spec.task == "classification"
    if strategy == "holdout":
        tr, va = train_test_split(np.arange(n), test_size=v.test_size, shuffle=v.shuffle,
                                  random_state=v.seed if v.shuffle else None,
                                  stratify=y if stratify and v.shuffle else None)
        return [Fold(0, np.sort(tr), np.sort(va))]
    if n < v.folds:
        raise DataError(f"{n} rows are too few for {v.folds} folds")
    cls = StratifiedKFold if stratify else KFold
    splitter = cls(n_splits=v.folds, shuffle=v.shuffle, random_state=v.seed if v.shuffle else None)
    return [Fold(i, tr, va) for i, (tr, va) in enumerate(splitter.split(frame, y))]

def fold_plan(frame: pd.DataFrame, folds: list[Fold]) -> list[dict[str, Any]]:
    """The folds as plain data (logged with every experiment): sizes and, for time-ordered data, the windows."""
    plan = []
    for fold in folds:
        entry: dict[str, Any] = {"fold": fold.index, "train_rows": len(fold.train), "valid_rows": len(fold.valid)}
        if fold.cutoff is not None:
            entry.update(cutoff=str(fold.cutoff), valid_start=str(frame.index[fold.valid[0]]),
                         valid_end=str(frame.index[fold.valid[-1]]))
        plan.append(entry)
    return plan
