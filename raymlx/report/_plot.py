"""Figures as PNG bytes: matplotlib loads lazily, draws off-screen, and every figure is closed once saved."""

from __future__ import annotations

import io
from contextlib import contextmanager
from typing import Iterator

from raymlx._imports import import_optional

__all__ = ["pyplot", "png", "figure", "DPI"]

DPI = 80  # small files, quick to encode: a report holds about ten charts a model


def pyplot():
    """``matplotlib.pyplot`` on the off-screen Agg backend (charts only ever go to files)."""
    matplotlib = import_optional("matplotlib", extra="explain", needed_for="raymlx's report charts")
    if matplotlib.get_backend().lower() != "agg":
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png(fig) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    finally:
        pyplot().close(fig)
    return buffer.getvalue()


@contextmanager
def figure(width: float = 5.5, height: float = 4.0, **kwargs) -> Iterator[tuple]:
    """A new figure and its axes; closed when the block ends, saved by :func:`png` inside it."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(width, height), **kwargs)
    try:
        yield fig, ax
    finally:
        plt.close(fig)
