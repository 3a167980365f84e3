"""Cleaning and feature pipelines: named lists of steps, fitted on a fold's training rows only.

A step reference names either

* a class with ``fit(frame) -> self`` and ``transform(frame) -> frame``, built as
  ``cls(**params)``; statistics it learns come from the training rows only; or
* a function ``f(frame, **params) -> frame`` that needs no fitting.

A pipeline works on the whole frame, target included (forecasting features are
often lags of the target). For forecasting the frame's index is the time column.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from raymlx.registry import resolve

__all__ = ["Pipeline", "FunctionStep", "FoldData", "build_pipeline", "expand_steps", "fold_features", "hide_unknown",
           "complete_rows", "known_columns", "make_step", "STEP_PACKAGE"]

STEP_PACKAGE = "raymlx.steps"


class FunctionStep:
    """A stateless step made from ``f(frame, **params) -> frame``."""

    def __init__(self, function: Callable[..., pd.DataFrame], **params: Any) -> None:
        self.function = function
        self.params = params

    def fit(self, frame: pd.DataFrame) -> FunctionStep:
        return self

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        return self.function(frame, **self.params)


@dataclass
class Pipeline:
    """Steps applied in order; ``fit`` learns on training rows, ``transform`` applies to any rows."""

    steps: list[Any]

    def fit(self, frame: pd.DataFrame) -> Pipeline:
        """Fit each step on the output of the ones before it; returns a fitted copy."""
        fitted = []
        for position, step in enumerate(self.steps):
            step = copy.deepcopy(step)
            step.fit(frame)
            if position < len(self.steps) - 1:  # the next step learns from this one's output
                frame = step.transform(frame)
            fitted.append(step)
        return Pipeline(fitted)

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        for step in self.steps:
            frame = step.transform(frame)
        return frame


def make_step(obj: Any, params: dict[str, Any]) -> Any:
    """Build a step object from a resolved reference."""
    if inspect.isclass(obj):
        return obj(**params)
    if callable(obj):
        return FunctionStep(obj, **params)
    raise TypeError(f"a step must be a class or a function, got {type(obj).__name__}")


def expand_steps(name: str, pipelines: dict[str, list], _seen: tuple[str, ...] = ()) -> list:
    """Flatten a pipeline's steps, replacing ``step: other_pipeline`` by that pipeline's steps.

    Raises:
        ValueError: On a cycle between pipelines.
    """
    if name in _seen:
        raise ValueError(f"pipelines refer to each other in a cycle: {' -> '.join((*_seen, name))}")
    steps = []
    for step in pipelines[name]:
        if step.step in pipelines:
            steps.extend(expand_steps(step.step, pipelines, (*_seen, name)))
        else:
            steps.append(step)
    return steps


def build_pipeline(name: str | None, pipelines: dict[str, list], *, base_dir: str) -> Pipeline:
    """Build the unfitted pipeline a model names (an empty one for ``None``)."""
    if name is None:
        return Pipeline([])
    load = partial(resolve, base_dir=base_dir, default_package=STEP_PACKAGE)
    return Pipeline([make_step(load(step.step), dict(step.params)) for step in expand_steps(name, pipelines)])


@dataclass
class FoldData:
    """One fold's features and targets, ready for any model."""

    X_train: pd.DataFrame
    y_train: pd.Series
    X_valid: pd.DataFrame
    y_valid: pd.Series


def fold_features(frame: pd.DataFrame, fold: Any, pipeline: Pipeline, *, target: str,
                  forecasting: bool, future_columns: Sequence[str] = ()) -> FoldData:
    """Fit the pipeline on a fold's training rows and compute both parts' features.

    The pipeline sees the training rows followed by the validation rows. For
    forecasting, every value of the validation rows is hidden (NaN) first, but for
    the ``future_columns`` (known over the window at the cutoff): their
    features can only come from what was known at the cutoff, so no step can leak
    the future, a column with no value in the window (a raw reading that is
    only known later) is left out of both parts, and training rows without every
    feature (the warm-up before the longest lag) are left out of training. Targets are always the raw
    values, whatever the steps did.

    Raises:
        ValueError: When the pipeline removed validation rows.
    """
    if forecasting:
        train_rows, valid_rows = frame.iloc[fold.train], hide_unknown(frame.iloc[fold.valid], future_columns)
        rows = pd.concat([train_rows, valid_rows])
    else:  # one copy of the fold's rows, its training part a view of it
        rows = frame.iloc[np.concatenate([fold.train, fold.valid])]
        train_rows, valid_rows = rows.iloc[:len(fold.train)], rows.iloc[len(fold.train):]
    fitted = pipeline.fit(train_rows)
    features = fitted.transform(rows)
    features = features.drop(columns=[target], errors="ignore")
    X_train, X_valid = _split_rows(features, train_rows.index, valid_rows.index)
    if len(X_valid) != len(valid_rows):
        raise ValueError(f"the pipeline removed {len(valid_rows) - len(X_valid)} of the "
                         f"{len(valid_rows)} validation rows of fold {fold.index}; steps may drop training rows only")
    if forecasting:
        known = known_columns(X_valid)
        X_train, X_valid = complete_rows(X_train[known]), X_valid[known]
    y = frame[target]
    return FoldData(X_train, y.loc[X_train.index], X_valid, y.loc[X_valid.index])


def _split_rows(features: pd.DataFrame, train: pd.Index, valid: pd.Index) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The training and validation parts of a fold's features, each a contiguous frame of its own.

    Steps keep the rows' order, so the validation rows are usually the last ones: then the two
    parts are slices, copied once each (a slice of a larger frame would be copied into every trial
    that reads it from Ray's object store, where a frame of its own is read in place).
    """
    n = len(valid)
    if len(features) >= n and features.index[len(features) - n:].equals(valid) \
            and features.index[:len(features) - n].isin(train).all():
        return features.iloc[:len(features) - n].copy(), features.iloc[len(features) - n:].copy()
    return features.loc[features.index.isin(train)], features.loc[features.index.isin(valid)]


def hide_unknown(rows: pd.DataFrame, future_columns: Sequence[str] = ()) -> pd.DataFrame:
    """Rows of a forecast window as known at its cutoff: NaN everywhere but in the future columns."""
    hidden = pd.DataFrame(float("nan"), index=rows.index, columns=rows.columns)
    for column in future_columns:
        hidden[column] = rows[column]
    return hidden


def complete_rows(X: pd.DataFrame) -> pd.DataFrame:
    """Training rows with every feature: drops the warm-up rows before the longest lag or window."""
    return X.loc[X.notna().all(axis=1)]


def known_columns(window: pd.DataFrame) -> list[str]:
    """Feature columns with at least one value in a forecast window (the rest are unknown at the cutoff)."""
    return list(window.columns[window.notna().any()])
