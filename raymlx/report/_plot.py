"""Figures as PNG bytes: matplotlib loads lazily, draws off-screen, and every figure is closed once saved.

Drawing is most of a report's cost, and most of a chart's drawing is matplotlib laying out and
rendering text: tick labels above all. So raymlx's own figures set their margins in inches instead
of asking matplotlib to find them (a second layout pass, about half as costly as the drawing itself),
and every axis gets a few well-chosen ticks rather than as many as fit.
"""

from __future__ import annotations

import gc
import io
from contextlib import contextmanager, nullcontext
from typing import Iterator

from raymlx._imports import import_optional

__all__ = ["pyplot", "png", "figure", "date_axis", "drawing", "DPI", "TICKS", "RC", "GC_THRESHOLD"]

DPI = 80  # small files, quick to encode: a report holds about ten charts a model
TICKS = 5  # at most about this many labelled ticks on a numeric axis
COMPRESSION = 1  # zlib's level: 4 ms a chart instead of 7 at the default 6, files 7 % larger
# Titles sit on top of their axes. Left to find their place (the default, no height), each title measured its
# axes' y axis, ticks and labels, once more at every drawing: a tenth of a chart's cost.
RC = {"axes.titley": 1.0}
# Collections of the youngest objects every 10,000 allocations instead of 700: a figure makes and drops tens of
# thousands of objects, which the default thresholds turned into full collections of everything the process
# holds (0.1 s each, one or two a section).
GC_THRESHOLD = (10_000, 10, 10)


def pyplot():
    """``matplotlib.pyplot`` on the off-screen Agg backend (charts only ever go to files)."""
    matplotlib = import_optional("matplotlib", extra="explain", needed_for="raymlx's report charts")
    if matplotlib.get_backend().lower() != "agg":
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _fewer_ticks(fig) -> None:
    """Numeric axes get at most about :data:`TICKS` ticks, no minor ticks, and no tick outside the view: each tick
    is an object matplotlib makes and lays out at every drawing, log axes (parallel coordinates draw one a
    parameter) have dozens, and the usual locators give a location beyond each end of the view, never drawn
    but made a tick all the same."""
    from matplotlib.ticker import FixedLocator, MaxNLocator, NullLocator

    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            if isinstance(axis.get_major_locator(), MaxNLocator):
                axis.get_major_locator().set_params(nbins=TICKS)
            if not isinstance(axis.get_major_locator(), (NullLocator, FixedLocator)) and not _dates(axis):
                axis.set_major_locator(FixedLocator(_in_view(axis)))  # the view is final: the figure is saved next
            axis.set_minor_locator(NullLocator())


def _dates(axis) -> bool:
    """Whether the axis writes dates: their formatters choose what to write (years, days, hours) from every
    location, those beyond the view included."""
    from matplotlib import dates

    return isinstance(axis.get_major_formatter(), (dates.AutoDateFormatter, dates.ConciseDateFormatter,
                                                   dates.DateFormatter))


def _in_view(axis) -> list[float]:
    """The axis' tick locations within its view (with matplotlib's own tolerance for rounding)."""
    low, high = sorted(axis.get_view_interval())
    slack = 1e-10 * (high - low)
    return [loc for loc in axis.get_majorticklocs() if low - slack <= loc <= high + slack]


def png(fig, *, crop: bool = False) -> bytes:
    """The figure as PNG bytes; the figure is closed.

    Args:
        fig: The figure.
        crop: Find the margins that fit everything drawn (a layout pass before the drawing): for figures of
            other libraries whose labels (parameter, feature names) can be longer than their margins.
            Without it the figure is drawn once, as laid out.
    """
    buffer = io.BytesIO()
    try:
        _fewer_ticks(fig)
        fig.set_layout_engine("none")  # a layout engine would run at each pass: margins are set or cropped
        fig.savefig(buffer, format="png", dpi=DPI, bbox_inches=_drawn_extent(fig) if crop else None,
                    pil_kwargs={"compress_level": COMPRESSION})
    finally:
        pyplot().close(fig)
    return buffer.getvalue()


def _drawn_extent(fig):
    """The box (inches) around everything the figure draws, with matplotlib's padding: ``bbox_inches="tight"``
    without the pass matplotlib draws first to find it (with no layout engine, the extents it reads are the same),
    up to a quarter of an Optuna plot's cost."""
    fig.set_dpi(DPI)  # text is measured at the size it is drawn
    extent = fig.get_tightbbox(fig.canvas.get_renderer())
    return extent.padded(pyplot().rcParams["savefig.pad_inches"])


@contextmanager
def figure(width: float = 5.5, height: float = 4.0, *, left: float = 0.75, bottom: float = 0.55,
           right: float = 0.2, top: float = 0.4, **kwargs) -> Iterator[tuple]:
    """A new figure and its axes, margins in inches (room for a title, axis labels and short tick labels).

    Closed when the block ends; saved by :func:`png` inside it.
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(width, height), dpi=DPI, **kwargs)
    fig.subplots_adjust(left=left / width, bottom=bottom / height, right=1 - right / width, top=1 - top / height)
    try:
        yield fig, ax
    finally:
        plt.close(fig)


@contextmanager
def drawing() -> Iterator[None]:
    """Draw charts cheaply in this block: matplotlib's settings of :data:`RC` (for the charts of other libraries as
    well: Optuna's, shap's) and the garbage collector's :data:`GC_THRESHOLD`; both are restored afterwards."""
    try:
        settings = pyplot().rc_context(RC)
    except ImportError:  # without matplotlib each chart says how to install it
        settings = nullcontext()
    thresholds = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLD)
    try:
        with settings:
            yield
    finally:
        gc.set_threshold(*thresholds)


def date_axis(axis, *, ticks: int = 4) -> None:
    """A time axis with a few dates, written concisely (the year and month once, where they change)."""
    from matplotlib import dates

    locator = dates.AutoDateLocator(minticks=2, maxticks=ticks)
    axis.set_major_locator(locator)
    axis.set_major_formatter(dates.ConciseDateFormatter(locator))
