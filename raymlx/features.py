"""Each pipeline's features on each fold: computed once for every trial of every model, and kept in Ray's
object store, where every trial reads them in place and the driver keeps no copy of its own."""

from __future__ import annotations

from typing import Callable

import pandas as pd
import ray

from raymlx.errors import RaymlxError
from raymlx.folds import Fold
from raymlx.pipeline import FoldData, build_pipeline, fold_features
from raymlx.spec import Spec

__all__ = ["PipelineFailed", "compute_fold_features", "share_features"]

FoldFeatures = dict[str | None, list[FoldData | ray.ObjectRef]]


class PipelineFailed(RaymlxError):
    """A pipeline step raised while computing a fold's features."""


def compute_fold_features(spec: Spec, frame: pd.DataFrame, folds: list[Fold], *, base_dir: str,
                          ray_ready: Callable[[], bool] | None = None) -> FoldFeatures:
    """Each pipeline's features on each fold, computed once for every trial of every model that uses it.

    Args:
        spec: The experiment's spec.
        frame: The data set.
        folds: The experiment's folds.
        base_dir: The spec's folder (user steps resolve there).
        ray_ready: Asked after each fold, without waiting, whether Ray is up; from its first yes on,
            each fold moves into the object store as soon as it is computed (those computed before
            with it), so the driver holds only the folds computed while Ray started.

    Raises:
        PipelineFailed: When a step raised.
    """
    result: FoldFeatures = {}
    for name in dict.fromkeys(m.pipeline for m in spec.models.values()):
        pipeline = build_pipeline(name, spec.pipelines, base_dir=base_dir)
        result[name] = computed = []
        for fold in folds:
            try:
                computed.append(fold_features(frame, fold, pipeline, target=spec.data.target,
                                              forecasting=spec.task == "forecasting",
                                              future_columns=spec.data.future_columns))
            except Exception as exc:
                raise PipelineFailed(f"pipeline '{name}' failed: {type(exc).__name__}: {exc}") from exc
            if ray_ready is not None and ray_ready():
                share_features(result)
    return result


def share_features(features: FoldFeatures) -> None:
    """Move each fold's features into Ray's object store, in place: every trial reads them there
    without a copy, and the driver keeps none of its own."""
    for folds in features.values():
        for i, fold in enumerate(folds):
            if not isinstance(fold, ray.ObjectRef):
                folds[i] = ray.put(fold)
