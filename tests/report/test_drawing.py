"""Charts are drawn with titles placed, not measured, and rarer garbage collections (both restored after), and
forecasts of close cutoffs share one time axis."""

from __future__ import annotations

import gc
import io

import matplotlib
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from raymlx.report._plot import DPI, GC_THRESHOLD, drawing, png, pyplot
from raymlx.report.charts import diagnostics


def test_drawing_places_titles_and_collects_less_then_restores_both():
    before = gc.get_threshold()
    assert before != GC_THRESHOLD and matplotlib.rcParams["axes.titley"] is None
    with pytest.raises(RuntimeError), drawing():
        assert gc.get_threshold() == GC_THRESHOLD
        fig, ax = pyplot().subplots()  # as Optuna's and shap's plots make theirs: the block's settings hold
        ax.set_title("title")
        fig.canvas.draw()
        assert ax.title.get_position()[1] == 1.0 and not ax._autotitlepos
        pyplot().close(fig)
        raise RuntimeError("a chart failed")
    assert gc.get_threshold() == before and matplotlib.rcParams["axes.titley"] is None


def _forecasts(gap_days: int, folds: int = 5) -> tuple[pd.DataFrame, pd.Series]:
    """Out-of-fold forecasts of a week after each cutoff, cutoffs ``gap_days`` apart, and the daily series."""
    days = pd.date_range("2020-01-01", periods=60 + gap_days * folds, freq="D")
    series = pd.Series(np.sin(np.arange(len(days)) / 9.0), index=days)
    rows = [{"fold": fold, "time": days[40 + gap_days * fold + step], "step": step + 1, "y_true": 0.0,
             "y_pred": 0.2 * fold} for fold in range(folds) for step in range(7)]
    return pd.DataFrame(rows), series


@pytest.mark.parametrize("gap_days, width", [(7, 9.0), (90, 3.2 * 5)])
def test_fold_forecasts_share_one_time_axis_when_cutoffs_are_close_and_get_a_panel_each_when_far(gap_days, width):
    oof, series = _forecasts(gap_days)
    with drawing():
        chart = next(c for c in diagnostics(oof, task="forecasting", series=series) if "forecast_by_fold" in c.path)
    image = np.asarray(Image.open(io.BytesIO(chart.png)).convert("RGB"))
    assert image.shape[1] == round(width * DPI)
    if gap_days == 7:  # every fold drawn, each in its own colour (its markers' centres)
        colours = {tuple(int(round(255 * v)) for v in c) for c in pyplot().get_cmap("tab10").colors[:5]}
        assert all((image == colour).all(axis=2).sum() > 20 for colour in colours)


def test_a_saved_chart_made_no_tick_beyond_its_view_but_its_date_axis_kept_its_own():
    fig, (numbers, days) = pyplot().subplots(ncols=2)
    numbers.plot([0.13, 0.91], [0.07, 3.3])
    days.plot(pd.date_range("2021-01-03", periods=40, freq="D"), np.arange(40))
    date_locator = days.xaxis.get_major_locator()
    png(fig)
    for axis in (numbers.xaxis, numbers.yaxis):
        low, high = axis.get_view_interval()
        locations = axis.get_majorticklocs()
        assert len(locations) >= 3 and all(low <= x <= high for x in locations)
        assert len(axis.majorTicks) == len(locations)  # matplotlib made a tick object for each, and no more
    assert days.xaxis.get_major_locator() is date_locator
