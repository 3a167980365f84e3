"""Diagnostics of one model drawn from its out-of-fold predictions, per task."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from raymlx.report._plot import date_axis, figure, png, pyplot
from raymlx.report._section import Chart
from raymlx.report.oof import PROBA_PREFIX

__all__ = ["diagnostics"]


def _chart(name: str, title: str, fig, *, crop: bool = False) -> Chart:
    return Chart(f"plots/diagnostics/{name}.png", title, "diagnostics", png(fig, crop=crop))


def diagnostics(oof: pd.DataFrame, *, task: str, series: pd.Series | None = None) -> list[Chart]:
    """The task's diagnostic charts.

    Args:
        oof: Out-of-fold predictions (see :mod:`raymlx.report.oof`).
        task: ``regression``, ``classification`` or ``forecasting``.
        series: Forecasting: the target around the cutoffs, drawn behind each fold's forecast.
    """
    if task == "classification":
        return _classification(oof)
    charts = _regression(oof)
    if task == "forecasting":
        charts += _forecasting(oof, series)
    return charts


def _regression(oof: pd.DataFrame) -> list[Chart]:
    y, p = oof["y_true"].to_numpy(float), oof["y_pred"].to_numpy(float)
    residual = y - p
    charts = []
    with figure() as (fig, ax):
        ax.scatter(y, p, s=10, alpha=0.6, c=oof["fold"], cmap="tab10")
        low, high = float(min(y.min(), p.min())), float(max(y.max(), p.max()))
        ax.plot([low, high], [low, high], color="grey", lw=1, ls="--")
        ax.set(xlabel="actual", ylabel="predicted", title="Predicted vs actual (colour: fold)")
        charts.append(_chart("predicted_vs_actual", "Predicted vs actual", fig))
    with figure() as (fig, ax):
        ax.scatter(p, residual, s=10, alpha=0.6, c=oof["fold"], cmap="tab10")
        ax.axhline(0, color="grey", lw=1, ls="--")
        ax.set(xlabel="predicted", ylabel="actual - predicted", title="Residuals vs predicted")
        charts.append(_chart("residuals_vs_predicted", "Residuals vs predicted", fig))
    with figure() as (fig, ax):
        ax.hist(residual, bins=30, color="#4c72b0", alpha=0.8)
        ax.axvline(0, color="grey", lw=1, ls="--")
        ax.set(xlabel="actual - predicted", ylabel="rows",
               title=f"Residual distribution (mean {residual.mean():.3g}, sd {residual.std():.3g})")
        charts.append(_chart("residual_distribution", "Residual distribution", fig))
    return charts


def _classification(oof: pd.DataFrame) -> list[Chart]:
    from sklearn.metrics import ConfusionMatrixDisplay

    charts = []
    with figure(5, 4.5) as (fig, ax):
        ConfusionMatrixDisplay.from_predictions(oof["y_true"].astype(str), oof["y_pred"].astype(str), ax=ax,
                                                colorbar=False)
        ax.set_title("Confusion matrix (all folds)")
        charts.append(_chart("confusion_matrix", "Confusion matrix", fig, crop=True))  # class names: any length
    proba = [c for c in oof.columns if c.startswith(PROBA_PREFIX)]
    if proba:
        charts += _curves(oof, proba)
    return charts


def _one_vs_rest(oof: pd.DataFrame, proba: list[str]) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(class, is it that class, its probability) for each class; only the positive class of two."""
    truth = oof["y_true"].astype(str).to_numpy()
    pairs = [(c[len(PROBA_PREFIX):], oof[c].to_numpy(float)) for c in proba]
    if len(pairs) == 2:
        pairs = pairs[1:]
    return [(label, truth == label, scores) for label, scores in pairs]


def _curves(oof: pd.DataFrame, proba: list[str]) -> list[Chart]:
    from sklearn.calibration import CalibrationDisplay
    from sklearn.metrics import PrecisionRecallDisplay, RocCurveDisplay

    classes = _one_vs_rest(oof, proba)
    kinds = [("roc", "ROC (one vs rest)", RocCurveDisplay), ("precision_recall", "Precision-recall (one vs rest)",
                                                              PrecisionRecallDisplay)]
    charts = []
    for name, title, display in kinds:
        with figure() as (fig, ax):
            for label, truth, scores in classes:
                if truth.any() and not truth.all():
                    display.from_predictions(truth, scores, ax=ax, name=f"class {label}")
            ax.set_title(title)
            charts.append(_chart(name, title, fig))
    with figure() as (fig, ax):
        for label, truth, scores in classes:
            CalibrationDisplay.from_predictions(truth, scores, n_bins=8, ax=ax, name=f"class {label}")
        ax.set_title("Calibration (one vs rest)")
        charts.append(_chart("calibration", "Calibration", fig))
    return charts


def _forecasting(oof: pd.DataFrame, series: pd.Series | None) -> list[Chart]:
    oof = oof.assign(time=pd.to_datetime(oof["time"]), error=oof["y_true"] - oof["y_pred"])
    return [_fold_windows(oof, series), _error_by_step(oof), _residuals_over_time(oof)]


@dataclass(frozen=True)
class _Window:
    """One fold's forecast: its rows and the times of its first and last."""

    fold: int
    rows: pd.DataFrame
    start: pd.Timestamp
    end: pd.Timestamp

    @classmethod
    def of(cls, fold: int, rows: pd.DataFrame) -> _Window:
        return cls(fold, rows, rows["time"].min(), rows["time"].max())

    @property
    def span(self) -> pd.Timedelta:
        return self.end - self.start

    @property
    def cutoff(self) -> pd.Timestamp:
        """A step before its first row."""
        return self.start - self.span / max(len(self.rows) - 1, 1)


FOLD_WINDOWS_TITLE = "Each fold's forecast against the actual values around its cutoff (dotted)"


def _fold_windows(oof: pd.DataFrame, series: pd.Series | None) -> Chart:
    """Each fold's forecast around its cutoff: on one time axis when the cutoffs are close together (each at most
    two windows after the one before), half the cost of one panel a fold, which far-apart cutoffs need."""
    windows = [_Window.of(fold, rows) for fold, rows in oof.groupby("fold")]
    close = all(b.cutoff - a.cutoff <= 2 * (a.end - a.cutoff) for a, b in zip(windows, windows[1:]))
    return _one_time_axis(windows, series) if close else _panel_a_fold(windows, series)


def _one_time_axis(windows: list[_Window], series: pd.Series | None) -> Chart:
    with figure(9, 3.5, bottom=0.5, top=0.35) as (fig, ax):
        if series is not None:
            first = windows[0]
            context = series[(series.index >= first.cutoff - 3 * first.span)
                             & (series.index <= max(w.end for w in windows))]
            ax.plot(context.index, context.to_numpy(), color="grey", lw=1, label="actual", zorder=1)
        colours = [c for c in pyplot().get_cmap("tab10").colors if len(set(c)) > 1]  # no grey: the actual values'
        for window, colour in zip(windows, itertools.cycle(colours)):
            ax.plot(window.rows["time"], window.rows["y_pred"], color=colour, marker="o", ms=3,
                    label=f"fold {window.fold}")
            ax.axvline(window.cutoff, color="black", ls=":", lw=1)
        ax.set_title(FOLD_WINDOWS_TITLE)
        date_axis(ax.xaxis, ticks=6)
        ax.legend(fontsize=7, ncols=min(len(windows) + 1, 6))
        return _chart("forecast_by_fold", "Forecast vs actual by fold", fig)


def _panel_a_fold(windows: list[_Window], series: pd.Series | None) -> Chart:
    with figure(3.2 * len(windows), 3.0, ncols=len(windows), sharey=True, squeeze=False, left=0.5, top=0.75,
                bottom=0.45) as (fig, axes):
        for ax, window in zip(axes[0], windows):
            if series is not None:
                context = series[(series.index >= window.start - 3 * window.span) & (series.index <= window.end)]
                ax.plot(context.index, context.to_numpy(), color="grey", lw=1, label="actual")
            ax.plot(window.rows["time"], window.rows["y_pred"], color="#dd8452", marker="o", ms=3, label="forecast")
            ax.axvline(window.cutoff, color="black", ls=":", lw=1)
            ax.set_title(f"fold {window.fold}: cutoff {window.cutoff.date()}", fontsize=9)
            date_axis(ax.xaxis, ticks=3)
            ax.tick_params(axis="x", labelsize=7)
        axes[0][0].legend(fontsize=7)
        fig.suptitle(FOLD_WINDOWS_TITLE, y=1 - 0.12 / 3.0)
        return _chart("forecast_by_fold", "Forecast vs actual by fold", fig)


def _error_by_step(oof: pd.DataFrame) -> Chart:
    by_step = oof.groupby("step")["error"]
    with figure() as (fig, ax):
        steps = by_step.mean().index.to_numpy()
        ax.bar(steps, np.sqrt(by_step.apply(lambda e: float(np.mean(e ** 2)))), color="#4c72b0", label="RMSE")
        ax.plot(steps, by_step.mean(), color="#c44e52", marker="o", label="mean error (bias)")
        ax.axhline(0, color="grey", lw=1)
        ax.set(xlabel="steps after the cutoff", ylabel="error", title="Error by horizon step (all folds)")
        ax.set_xticks(steps)
        ax.legend()
        return _chart("error_by_step", "Error by horizon step", fig)


def _residuals_over_time(oof: pd.DataFrame) -> Chart:
    with figure(7, 3.5, bottom=0.7) as (fig, ax):
        for fold, rows in oof.groupby("fold"):
            ax.plot(rows["time"], rows["error"], marker="o", ms=3, label=f"fold {fold}")
        ax.axhline(0, color="grey", lw=1, ls="--")
        ax.set(xlabel="time", ylabel="actual - forecast", title="Residuals over time")
        date_axis(ax.xaxis, ticks=6)
        ax.legend(fontsize=7, ncols=2)
        return _chart("residuals_over_time", "Residuals over time", fig)
