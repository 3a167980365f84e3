"""Charts are drawn with titles placed, not measured, and rarer garbage collections; both are restored after."""

from __future__ import annotations

import gc

import matplotlib
import pytest

from raymlx.report._plot import GC_THRESHOLD, drawing, pyplot


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
