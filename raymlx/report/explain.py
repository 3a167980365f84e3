"""Explanations of a model's predictions, honest about what each family can show.

* A model that sees feature columns (estimators, train functions, regressors on lags and
  calendar columns) gets SHAP values: a linear explainer for linear models, a tree explainer
  for tree ensembles, the kernel explainer for anything else, on a bounded sample of rows
  and within a time budget.
* Prophet shows its own decomposition: trend, seasonalities and regressors.
* Univariate statistical models see only the target's past: the report says so and shows
  what the model exposes (its fitted level, trend and season, its lag weights, the season it repeats).
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd

from raymlx._imports import import_optional
from raymlx.models.base import TrainFunctionModel
from raymlx.pipeline import FoldData
from raymlx.report._plot import figure, png, pyplot
from raymlx.report._section import Chart

__all__ = ["Explained", "explain", "explainer_kind", "importance_bars", "SHAP_PREFIX", "VALUE_PREFIX", "BASE_COLUMN"]

logger = logging.getLogger(__name__)
SHAP_PREFIX, VALUE_PREFIX, BASE_COLUMN = "shap:", "value:", "base_value"
CLOCK = time.process_time  # SHAP's budget: seconds of CPU (one thread a report process)
LINEAR_MODULES = ("sklearn.linear_model",)
TREE_MODULES = ("sklearn.ensemble", "sklearn.tree", "xgboost", "lightgbm", "catboost")
# The kernel explainer's coalitions a row: this many a feature, and 100. On the temperature example's neural network
# (28 features), against a precise reference (400 background rows, 2000 coalitions), 5 a feature missed by 18 % of
# the values' mean size, 10 by 16 %, at 0.7 times the cost; ten k-means centres as the background (shap's advice)
# missed by 19 %, and k-means centres narrow the spread of the rows they stand for (a square's mean falls short).
KERNEL_COALITIONS = 5
SHOWN = 12  # features a SHAP chart shows by name


@dataclass
class Explained:
    """Charts and notes of one model, and its SHAP values (one column per feature) when it has them."""

    charts: list[Chart] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    values: pd.DataFrame | None = None
    facts: dict[str, Any] = field(default_factory=dict)


def _chart(name: str, title: str, fig, *, crop: bool = False) -> Chart:
    return Chart(f"plots/explanations/{name}.png", title, "explanations", png(fig, crop=crop))


def explain(model: Any, fold: FoldData, *, task: str, sample: int, background: int, budget_s: float,
            seed: int = 0) -> Explained:
    """Explain a model fitted on ``fold``'s training rows.

    Args:
        model: The fitted model (as built from the spec).
        fold: The fold it was fitted on; SHAP explains rows of this fold.
        task: ``regression``, ``classification`` or ``forecasting``.
        sample: Most rows to explain.
        background: Rows standing in for "feature unknown" in the kernel explainer.
        budget_s: Time SHAP may take for this model; fewer rows are explained when it would take longer.
        seed: Seed of the row samples.
    """
    if type(model).__module__ == "raymlx.models.prophet":
        return _prophet(model, fold)
    if getattr(model, "refit_on_history", False):
        return _univariate(model, fold)
    return _shap(model, fold, task=task, sample=sample, background=background, budget_s=budget_s, seed=seed)


def _inner(model: Any) -> Any:
    return model.fitted_ if isinstance(model, TrainFunctionModel) else model


def explainer_kind(model: Any) -> str:
    """``linear``, ``tree`` or ``kernel``: which SHAP explainer suits the fitted model."""
    module = type(_inner(model)).__module__
    if module.startswith(LINEAR_MODULES) and hasattr(_inner(model), "coef_"):
        return "linear"
    return "tree" if module.startswith(TREE_MODULES) else "kernel"


def _rows(fold: FoldData, *, task: str, sample: int, seed: int) -> pd.DataFrame:
    """Rows to explain: the most recent for forecasting, a random sample otherwise."""
    rows = pd.concat([fold.X_train, fold.X_valid])
    if task == "forecasting":
        return rows.tail(sample)
    return rows.sample(min(sample, len(rows)), random_state=seed)


def _make_explainer(shap, kind: str, model: Any, fold: FoldData, *, task: str, background: int, seed: int):
    """The explainer, and the keyword arguments of its call."""
    inner, X = _inner(model), fold.X_train
    if kind == "linear":  # every training row: the explanation is coef * (x - mean of the training rows)
        return shap.LinearExplainer(inner, shap.maskers.Independent(X, max_samples=len(X))), {}
    if kind == "tree":
        return shap.TreeExplainer(inner), {"check_additivity": False}
    method = model.predict_proba if task == "classification" else model.predict
    predict = _as_array(method, list(X.columns), model)
    # Kernel SHAP on a sample of background rows: no compilation step (shap's permutation explainer spends
    # seconds compiling with numba on its first call), and a cost per row fixed by the coalitions evaluated.
    explainer = shap.KernelExplainer(predict, shap.sample(X, background, random_state=seed), seed=seed)
    return _KernelCall(explainer, nsamples=KERNEL_COALITIONS * X.shape[1] + 100), {}


def _as_array(method: Callable, columns: list[str], model: Any) -> Callable[[np.ndarray], np.ndarray]:
    """The model's prediction of the kernel explainer's rows (arrays of the columns, in order).

    A scikit-learn estimator fitted on exactly these columns gets the array itself: made a frame again, each of
    the explainer's calls (two a row, thousands of rows each) spent a third of its time on the estimator checking
    and converting that frame's columns; the only difference is its warning that the array has no column names.
    Any other model gets its columns by name.
    """
    if list(getattr(model, "feature_names_in_", ())) != columns:
        return lambda values: np.asarray(method(pd.DataFrame(values, columns=columns)))

    def predict(values: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="X does not have valid feature names", category=UserWarning)
            return np.asarray(method(values))

    return predict


class _KernelCall:
    """The kernel explainer called like the others: rows in, an object with ``values`` and ``base_values`` out."""

    def __init__(self, explainer, *, nsamples: int) -> None:
        self.explainer = explainer
        self.nsamples = nsamples

    def __call__(self, rows: pd.DataFrame):
        values = np.asarray(self.explainer.shap_values(rows, nsamples=self.nsamples, l1_reg=False, silent=True))
        base = np.broadcast_to(np.asarray(self.explainer.expected_value), (len(rows), *values.shape[2:]))
        return _Values(values, base)


@dataclass
class _Values:
    values: np.ndarray
    base_values: np.ndarray


def _budgeted(explainer, call: dict, rows: pd.DataFrame, budget_s: float, started: float):
    """Explain one row, then ever larger batches, each only as large as the rest of the budget holds at the
    pace so far; the last rows are left out when the budget runs out.

    The budget is CPU time (:data:`CLOCK`): the report's processes run at the lowest priority, so their
    wall time says how busy the cores were, not what SHAP cost.
    """
    parts, done, size = [], 0, 1
    while size > 0:
        batch_started = CLOCK()
        parts.append(explainer(rows.iloc[done:done + size], **call))
        done += size
        per_row = (CLOCK() - batch_started) / size
        left = budget_s - (CLOCK() - started)
        # A batch fits in what is left less a tenth of the budget, and takes at most a fifth of it.
        size = min(len(rows) - done, 2 * size, int(min(left - 0.1 * budget_s, 0.2 * budget_s) / max(per_row, 1e-6)))
    values = np.concatenate([np.asarray(p.values) for p in parts])
    base = np.concatenate([np.broadcast_to(np.asarray(p.base_values), np.asarray(p.values).shape[:1]
                                           + np.asarray(p.values).shape[2:]) for p in parts])
    return values, base, rows.iloc[:done]


def _one_output(values: np.ndarray, base: np.ndarray, model: Any) -> tuple[np.ndarray, np.ndarray, str | None]:
    """Values of one output: a classifier's last class (the positive one of two)."""
    if values.ndim == 2:
        return values, base, None
    classes = getattr(_inner(model), "classes_", None)
    label = str(classes[-1]) if classes is not None else str(values.shape[2] - 1)
    return values[:, :, -1], base[:, -1], label


def _shap(model: Any, fold: FoldData, *, task: str, sample: int, background: int, budget_s: float,
          seed: int) -> Explained:
    shap = import_optional("shap", extra="explain", needed_for="the report's explanations")
    if task == "classification" and not callable(getattr(model, "predict_proba", None)):
        return Explained(notes=["SHAP: this classifier gives no probabilities, so there is nothing additive to explain."])
    rows = _rows(fold, task=task, sample=sample, seed=seed)
    started, kind = CLOCK(), explainer_kind(model)
    try:
        explainer, call = _make_explainer(shap, kind, model, fold, task=task, background=background, seed=seed)
        values, base, rows = _budgeted(explainer, call, rows, budget_s, started)
    except Exception:  # the tree explainer does not know every ensemble (e.g. a multi-class boosted one)
        if kind == "kernel":
            raise
        logger.info("%s explainer failed; kernel instead", kind, exc_info=True)
        kind, started = "kernel", CLOCK()
        explainer, call = _make_explainer(shap, kind, model, fold, task=task, background=background, seed=seed)
        values, base, rows = _budgeted(explainer, call, rows, budget_s, started)
    seconds = CLOCK() - started
    values, base, label = _one_output(values, base, model)
    explanation = shap.Explanation(values, base, data=rows.to_numpy(dtype=float), feature_names=list(rows.columns))
    output = "margin (log-odds)" if kind == "linear" else "probability"
    of = f" of class {label}'s {output}" if label is not None else ""
    notes = [f"SHAP ({kind} explainer){of}: {len(rows)} rows of the last fold explained in {seconds:.1f} s of CPU "
             f"(budget {budget_s:g} s, sample {sample})."]
    return Explained(_shap_charts(shap, explanation), notes, _values_frame(values, base, rows),
                     {"explainer": kind, "shap_rows": len(rows), "shap_seconds": round(seconds, 3)})


def _values_frame(values: np.ndarray, base: np.ndarray, rows: pd.DataFrame) -> pd.DataFrame:
    frame = pd.DataFrame(values, columns=[SHAP_PREFIX + str(c) for c in rows.columns], index=rows.index)
    for column in rows.columns:
        frame[VALUE_PREFIX + str(column)] = rows[column].to_numpy()
    frame[BASE_COLUMN] = base
    return frame


def _shap_charts(shap, explanation) -> list[Chart]:
    plt = pyplot()
    plt.figure(figsize=(6, 4.5))
    shap.plots.beeswarm(explanation, max_display=SHOWN, show=False)
    fig = plt.gcf()
    fig.suptitle("SHAP values (beeswarm)")
    beeswarm = _chart("shap_beeswarm", "SHAP values (beeswarm)", fig, crop=True)  # feature names: any length
    return [beeswarm, _importance(np.abs(explanation.values).mean(axis=0), list(explanation.feature_names))]


def importance_bars(mean: np.ndarray, names: list[str]) -> tuple[list[str], list[float]]:
    """The bars of the mean |SHAP| chart, largest first: every feature when there are at most :data:`SHOWN`, else
    the ``SHOWN - 1`` largest and the sum of the others (as shap's bar plot)."""
    order = np.argsort(mean, kind="stable")[::-1]
    cut = SHOWN - 1 if len(order) > SHOWN else len(order)
    shown, rest = order[:cut], order[cut:]
    labels = [names[i] for i in shown] + ([f"Sum of {len(rest)} other features"] if len(rest) else [])
    return labels, [float(mean[i]) for i in shown] + ([float(mean[rest].sum())] if len(rest) else [])


def _importance(mean: np.ndarray, names: list[str]) -> Chart:
    """Mean |SHAP| of the :data:`SHOWN` most important features, the others summed, as shap's bar plot shows them;
    drawn once, its margin fitted to the names (shap's own plot, cropped, took three times as long)."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextToPath

    labels, values = importance_bars(mean, names)
    font = FontProperties(size=pyplot().rcParams["ytick.labelsize"])
    widest = max(TextToPath().get_text_width_height_descent(label, font, ismath=False)[0] for label in labels)
    left, height = widest / 72 + 0.35, 0.28 * len(labels) + 1.0
    with figure(4.5 + left, height, left=left, bottom=0.55, top=0.35) as (fig, ax):
        positions = np.arange(len(labels))[::-1]
        ax.barh(positions, values, color="#1e88e5", height=0.7)
        ax.set_yticks(positions, labels)
        ax.set(xlabel="mean |SHAP value|", title="Mean |SHAP| by feature", ylim=(-0.6, len(labels) - 0.4))
        return _chart("shap_importance", "Mean |SHAP| by feature", fig)


def _prophet(model: Any, fold: FoldData) -> Explained:
    history = model._frame(fold.X_train)
    forecast = model.model_.predict(history)
    fig = model.model_.plot_components(forecast, uncertainty=False, figsize=(7, 2.2 * (2 + len(model.regressors))))
    notes = ["Prophet is explained by its own decomposition, fitted on the last fold's training rows: "
             "trend, seasonalities" + (" and the regressors " + ", ".join(model.regressors) if model.regressors else "")
             + ". It sees no other feature column, so SHAP has nothing to add."]
    return Explained([_chart("prophet_components", "Prophet components", fig)], notes, facts={"explainer": "prophet"})


UNIVARIATE = ("{name} sees only the target's own past, no feature columns: SHAP has nothing to attribute. "
              "Shown instead is what the model exposes.")


def _univariate(model: Any, fold: FoldData) -> Explained:
    name = getattr(model, "model", None) or type(model).__name__
    name = name if isinstance(name, str) else getattr(name, "__name__", str(name))
    notes, charts = [UNIVARIATE.format(name=name)], []
    if hasattr(model, "last_season_"):
        with figure(6, 3) as (fig, ax):
            season = model.last_season_
            ax.plot(np.arange(1, len(season) + 1), season, marker="o" if len(season) < 60 else None)
            ax.set(xlabel="step of the season", ylabel="value", title=f"The season it repeats ({len(season)} steps)")
            charts.append(_chart("season_repeated", "The season it repeats", fig))
    fitted: Any = getattr(getattr(model, "model_", None), "model", None)
    components = {k: np.asarray(getattr(fitted, k)) for k in ("level", "trend", "season")
                  if getattr(fitted, k, None) is not None}
    if components:
        charts.append(_components(components, fold.y_train))
    elif fitted is not None and hasattr(fitted, "coef_"):
        charts.append(_lag_weights(np.ravel(fitted.coef_)))
    if not charts:
        notes.append("This model exposes no fitted components to show.")
    return Explained(charts, notes, facts={"explainer": "none (univariate)"})


def _components(components: dict[str, np.ndarray], y: pd.Series) -> Chart:
    height = 1.8 * len(components)
    with figure(7, height, nrows=len(components), squeeze=False, sharex=True, top=0.5) as (fig, axes):
        for ax, (name, values) in zip(axes[:, 0], components.items()):
            ax.plot(values[-len(y):] if len(values) >= len(y) else values, lw=1)
            ax.set_ylabel(name)
        axes[-1, 0].set_xlabel("training step")
        fig.suptitle("Fitted components (last fold)", y=1 - 0.12 / height)
        return _chart("fitted_components", "Fitted components", fig)


def _lag_weights(coef: np.ndarray) -> Chart:
    with figure(6, 3) as (fig, ax):
        lags = np.arange(-len(coef), 0)
        ax.bar(lags, coef, color="#4c72b0")
        ax.set(xlabel="lag of the target (steps back)", ylabel="weight", title="Weight of each past value")
        return _chart("lag_weights", "Weight of each past value", fig)
