"""Ctrl-C that is never lost: an interrupt Python dropped is raised again at the next checkpoint.

Python raises ``KeyboardInterrupt`` wherever the main thread is when SIGINT arrives. When that is
inside a callback the interpreter runs on its own (an import's module-lock cleanup, a weakref's
finaliser), it prints "Exception ignored in ..." and goes on: Ctrl-C during the imports at a
command's start was sometimes not answered at all. While :func:`remembered` is active, every
SIGINT is also noted, and :func:`checkpoint` raises one that nobody handled yet.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Iterator

__all__ = ["remembered", "checkpoint"]

_pending = threading.Event()


def _note_and_raise(signum: int, frame: Any) -> None:
    _pending.set()
    raise KeyboardInterrupt


@contextlib.contextmanager
def remembered() -> Iterator[None]:
    """Note every Ctrl-C while the block runs (main thread only; elsewhere the block runs unchanged)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGINT, _note_and_raise)
    _pending.clear()
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)
        _pending.clear()


def checkpoint() -> None:
    """Raise ``KeyboardInterrupt`` for a Ctrl-C that was noted but never reached a handler.

    Raises:
        KeyboardInterrupt: When a Ctrl-C was noted and not handled.
    """
    if _pending.is_set():
        _pending.clear()
        raise KeyboardInterrupt
