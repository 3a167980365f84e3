"""Search spaces of the spec as Optuna distributions and grids; free of Ray, so checks can use it."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import optuna

from raymlx.spec import ChoiceParam, FloatParam

__all__ = ["distributions", "decode", "grid_points", "grid_size", "continuous_params"]


def distributions(space: dict) -> dict[str, optuna.distributions.BaseDistribution]:
    """Optuna distributions for a spec's search space."""
    result: dict[str, optuna.distributions.BaseDistribution] = {}
    for name, p in space.items():
        if isinstance(p, ChoiceParam):
            result[name] = optuna.distributions.CategoricalDistribution(_choices(p))
        elif isinstance(p, FloatParam):
            result[name] = optuna.distributions.FloatDistribution(p.low, p.high, log=p.log, step=p.step)
        else:
            result[name] = optuna.distributions.IntDistribution(p.low, p.high, log=p.log, step=p.step or 1)
    return result


def _is_plain(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _choices(p: ChoiceParam) -> list[Any]:
    """Optuna stores only plain values: lists and mappings (``hidden_layer_sizes: [32, 16]``) go by position."""
    return list(p.values) if all(_is_plain(v) for v in p.values) else list(range(len(p.values)))


def decode(space: dict, params: dict[str, Any]) -> dict[str, Any]:
    """Turn sampled positions of non-plain choices back into the spec's values."""
    return {name: space[name].values[value] if name in space and isinstance(space[name], ChoiceParam)
            and not all(_is_plain(v) for v in space[name].values) else value for name, value in params.items()}


def _count(p) -> int:
    """Values of one grid parameter (rounding-safe for stepped floats)."""
    if isinstance(p, ChoiceParam):
        return len(p.values)
    return math.floor((p.high - p.low) / (p.step or 1) + 1e-9) + 1


def grid_size(space: dict) -> float:
    """Points in a grid over the space; ``inf`` when a float has no step."""
    if continuous_params(space):
        return math.inf
    return float(math.prod(_count(p) for p in space.values()))


def grid_points(space: dict) -> dict[str, list[Any]]:
    """Every value of each parameter, for a grid search (no float without a step)."""
    points = {}
    for name, p in space.items():
        if isinstance(p, ChoiceParam):
            points[name] = _choices(p)
        else:
            values = p.low + (p.step or 1) * np.arange(_count(p))
            points[name] = [round(v, 12) if isinstance(v, float) else v for v in values.tolist()]
    return points


def continuous_params(space: dict) -> list[str]:
    """Parameters a grid cannot enumerate: floats without a step."""
    return [name for name, p in space.items() if isinstance(p, FloatParam) and p.step is None]
