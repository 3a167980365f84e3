"""The leaderboard: each model's best trial on the experiment's shared folds and metric, best first."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from raymlx._result import PREDICTIONS_KEY, failure_of

__all__ = ["LeaderboardRow", "build_leaderboard", "ranked", "leaderboard_frame", "skill", "champion_row", "beats_baseline"]


@dataclass
class LeaderboardRow:
    """One model's best trial, on the experiment's shared folds and metric."""

    model: str
    score: float
    score_std: float
    params: dict[str, Any]
    trials: int
    failed: int
    wall_time_s: float
    fold_scores: list[float] = field(default_factory=list)
    last_error: str | None = None
    predictions: dict[str, Any] | None = field(default=None, repr=False)  # the best trial's, per fold
    baseline: bool = False
    skill: float = math.nan  # relative improvement on the baseline's score: 0.25 = 25 % better (see skill())


def skill(score: float, baseline: float, mode: str) -> float:
    """How much better than the baseline a score is, relative to the baseline's: positive is better.

    ``(baseline - score) / |baseline|`` for a metric to minimise (the relative error
    reduction), ``(score - baseline) / |baseline|`` for one to maximise; NaN when the
    baseline scored 0 or not at all.
    """
    if math.isnan(score) or math.isnan(baseline) or baseline == 0:
        return math.nan
    gain = baseline - score if mode == "min" else score - baseline
    return gain / abs(baseline)


def champion_row(board: list[LeaderboardRow], *, baseline_may_win: bool = False) -> LeaderboardRow | None:
    """The best row that scored and may be the champion (the baseline only when allowed), if any."""
    for row in board:
        if not math.isnan(row.score) and (baseline_may_win or not row.baseline):
            return row
    return None


def beats_baseline(board: list[LeaderboardRow]) -> bool | None:
    """Whether some model scored better than the baseline; ``None`` without a scored baseline."""
    base = next((r for r in board if r.baseline), None)
    if base is None or math.isnan(base.score):
        return None
    return any(r.skill > 0 for r in board if not r.baseline)


def build_leaderboard(results, *, models: list[str], metric: str, mode: str, wall_times: dict[str, float],
                      errors: dict[str, str | None] | None = None, baseline: str | None = None) -> list[LeaderboardRow]:
    """One row per model, best first; a model whose trials all failed comes last with a NaN score.

    With ``baseline`` (a model's name), that row is marked and every row gets its skill against it.
    """
    rows = []
    for name in models:
        mine = [r for r in results if r.config and r.config.get("model") == name]
        scored = [r for r in mine if r.error is None and r.metrics and metric in r.metrics
                  and failure_of(r.metrics) is None]
        best = (min if mode == "min" else max)(scored, key=lambda r: r.metrics[metric]) if scored else None
        rows.append(LeaderboardRow(
            model=name,
            score=best.metrics[metric] if best else math.nan,
            score_std=best.metrics.get(f"{metric}_std", math.nan) if best else math.nan,
            params=dict(best.config["params"]) if best else {},
            trials=len(mine), failed=len(mine) - len(scored),
            wall_time_s=wall_times.get(name, math.nan),
            fold_scores=[v for k, v in sorted(best.metrics.items()) if k.startswith(f"{metric}_fold")] if best else [],
            last_error=(errors or {}).get(name),
            predictions=best.metrics.get(PREDICTIONS_KEY) if best else None,
        ))
    base = next((r for r in rows if r.model == baseline), None)
    for row in rows:
        row.baseline = row is base
        row.skill = skill(row.score, base.score, mode) if base is not None else math.nan
    return ranked(rows, mode=mode)


def ranked(rows: list[LeaderboardRow], *, mode: str) -> list[LeaderboardRow]:
    """The rows in the leaderboard's order: best score first (``mode``: "min" or "max"), unscored (NaN) last."""
    sign = 1 if mode == "min" else -1
    return sorted(rows, key=lambda r: (math.isnan(r.score), sign * r.score if not math.isnan(r.score) else 0))


def leaderboard_frame(rows: list[LeaderboardRow]) -> pd.DataFrame:
    """The leaderboard as a table (for logging and printing)."""
    return pd.DataFrame([asdict(r) for r in rows]).drop(columns=["fold_scores", "last_error", "predictions"])
