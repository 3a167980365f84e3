"""The experiment at a glance: the summary, each model's per-fold scores, the fold plan in time (drawn by a report
process: no MLflow here)."""

from __future__ import annotations

import math
import platform
from importlib import metadata
from typing import Any

import numpy as np
import pandas as pd

from raymlx.report._plot import drawing, figure, png
from raymlx.report._section import Chart
from raymlx.spec import Spec

__all__ = ["BASELINES", "metric_of", "draw_overview", "baseline_of", "best_trial", "fold_scores", "leaderboard_chart",
           "fold_plan_chart", "versions", "summarize"]

BASELINES = ("NaiveSeasonal", "DummyRegressor", "DummyClassifier")  # models that set the bar to beat
PACKAGES = ("raymlx", "ray", "mlflow", "optuna", "scikit-learn", "pandas", "numpy", "shap", "matplotlib",
            "prophet", "darts")


def metric_of(spec: Spec, base_dir: str):
    """The spec's metric (its mode filled in)."""
    from raymlx.metrics import get_metric

    return get_metric(spec.metric_spec.name, spec.metric_spec.mode, base_dir=base_dir)


def draw_overview(spec: Spec, base_dir: str, scores: dict[str, list[float]], plan: list[dict] | None, *,
                  data_start: str | None) -> list[Chart]:
    """The leaderboard chart (each model's score on every fold, best first) and, for forecasting, the fold plan.

    Args:
        spec: The spec as tuned.
        base_dir: The spec's folder.
        scores: Each model's best configuration's score on every fold, best model first.
        plan: The folds as :func:`raymlx.folds.fold_plan` writes them.
        data_start: Forecasting: the data's first time.
    """
    metric = metric_of(spec, base_dir)
    baseline = baseline_of({n: m.model for n, m in spec.models.items()})
    with drawing():
        charts = [leaderboard_chart(scores, metric=metric.name, baseline=baseline)]
        timeline = fold_plan_chart(plan or [], data_start=data_start)
    return charts + ([timeline] if timeline else [])


def baseline_of(references: dict[str, str]) -> str | None:
    """The first model whose reference names a baseline (the seasonal naive forecast, a dummy estimator)."""
    for name, reference in references.items():
        if reference.rpartition(":")[2].rpartition(".")[2] in BASELINES:
            return name
    return None


def best_trial(runs: list, *, metric: str, mode: str):
    """The finished trial run with the best score, or ``None``."""
    scored = [r for r in runs if r.info.status == "FINISHED" and metric in r.data.metrics
              and r.data.metrics[metric] == r.data.metrics[metric]]
    if not scored:
        return None
    return (min if mode == "min" else max)(scored, key=lambda r: r.data.metrics[metric])


def fold_scores(run, metric: str) -> list[float]:
    """A trial run's score on each fold, in fold order."""
    prefix = f"{metric}_fold"
    folds = {int(k[len(prefix):]): v for k, v in run.data.metrics.items()
             if k.startswith(prefix) and k[len(prefix):].isdigit()}
    return [folds[i] for i in sorted(folds)]


def leaderboard_chart(scores: dict[str, list[float]], *, metric: str, baseline: str | None) -> Chart:
    """Each model's best configuration scored on every fold (dots), its mean (bar), the baseline marked."""
    names = list(scores)[::-1]  # best at the top
    with figure(7, 0.45 * len(names) + 1.5) as (fig, ax):
        for y, name in enumerate(names):
            values = np.asarray(scores[name], dtype=float)
            colour = "#c44e52" if name == baseline else "#4c72b0"
            if len(values):
                ax.barh(y, values.mean(), color=colour, alpha=0.25, height=0.6)
                ax.scatter(values, np.full(len(values), y), color=colour, s=18, zorder=3)
        if baseline in scores and scores[baseline]:
            ax.axvline(float(np.mean(scores[baseline])), color="#c44e52", ls="--", lw=1, label=f"baseline: {baseline}")
            ax.legend(loc="lower right", fontsize=8)
        ax.set_yticks(range(len(names)), [f"{n} (baseline)" if n == baseline else n for n in names])
        ax.set(xlabel=f"{metric} on each fold (dots) and mean (bar)", title="Leaderboard: every fold's score")
        return Chart("plots/leaderboard.png", "Leaderboard: each model's score on every fold", "overview", png(fig, crop=True))


def fold_plan_chart(plan: list[dict], *, data_start: str | None) -> Chart | None:
    """The forecasting folds as a timeline around the cutoffs: the end of each fold's training rows, then the
    window it scores; the training rows' count and first time are written on each bar."""
    if not plan or "cutoff" not in plan[0]:
        return None
    first_cutoff, last_end = pd.Timestamp(plan[0]["cutoff"]), pd.Timestamp(plan[-1]["valid_end"])
    left = first_cutoff - (last_end - first_cutoff)
    with figure(7, 0.4 * len(plan) + 1.5) as (fig, ax):
        for entry in plan:
            start, end, cutoff = (pd.Timestamp(entry[k]) for k in ("valid_start", "valid_end", "cutoff"))
            step = (end - start) / max(entry["valid_rows"] - 1, 1)
            first = cutoff - step * (entry["train_rows"] - 1)
            if data_start is not None and first < pd.Timestamp(data_start):
                first = pd.Timestamp(data_start)
            y = entry["fold"]
            ax.plot([max(first, left), cutoff], [y, y], color="#4c72b0", lw=6, solid_capstyle="butt",
                    label="training rows" if y == 0 else None)
            ax.plot([start, end], [y, y], color="#dd8452", lw=6, solid_capstyle="butt",
                    label="scored window" if y == 0 else None)
            ax.annotate(f"{entry['train_rows']} rows from {first.date()}", (left, y), xytext=(2, 5),
                        textcoords="offset points", fontsize=7)
        ax.set_xlim(left, last_end + step)
        ax.set_yticks([e["fold"] for e in plan], [f"fold {e['fold']}" for e in plan])
        ax.invert_yaxis()
        ax.legend(loc="upper right", fontsize=8)  # the corner no fold reaches: fold 0 ends first
        ax.tick_params(axis="x", labelrotation=30)
        ax.set(title="Fold plan around the cutoffs: training rows, then the window each fold scores", xlabel="time")
        return Chart("plots/fold_plan.png", "Fold plan", "overview", png(fig, crop=True))


def versions() -> dict[str, str]:
    """Versions of Python and of the packages a result depends on (those installed)."""
    found = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return found


def _score(rows: list[dict], name: str | None) -> float | None:
    for row in rows:
        if row["model"] == name and not math.isnan(float(row["score"])):
            return float(row["score"])
    return None


def summarize(rows: list[dict], *, baseline: str | None, mode: str) -> dict[str, Any]:
    """The champion against the runner-up and the baseline: their scores and the relative gain."""
    scored = [r for r in rows if not math.isnan(float(r["score"]))]
    if not scored:
        return {"champion": None}
    champion = scored[0]
    result: dict[str, Any] = {"champion": champion["model"], "champion_score": float(champion["score"]),
                              "champion_score_std": float(champion["score_std"])}
    for role, name in (("runner_up", scored[1]["model"] if len(scored) > 1 else None), ("baseline", baseline)):
        score = _score(rows, name)
        if score is None or name == champion["model"]:
            continue
        gain = (score - champion["score"]) / abs(score) if mode == "min" else (champion["score"] - score) / abs(score)
        result.update({role: name, f"{role}_score": score, f"gain_over_{role}": gain if score else None})
    return result
