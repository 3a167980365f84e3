"""Answering the requests that wait together in a replica with one call: when a batch stops waiting.

A batch is answered at once when it is full (``max_size``), or when it holds every
request the replica has and no client answered a moment ago is still to send its next
one: a lone client is never held back. Requests the replica has that have not reached
the batch yet (being read, parsed) are waited for up to ``wait_s`` after the batch's
first request. Clients answered a moment ago (within ``wait_s``) by a model call they
shared with others (see :class:`Returning`) are waited for while requests keep coming:
until ``gap_s`` passes without one (and at most ``wait_s`` in all). Clients in a closed
loop get their answers a little apart and send their next requests a little apart;
answering the first of them alone would cost a model call each, and a one-row model
call costs about as much as a 16-row one.

The calls run on the replica's event loop (the model call holds the GIL anyway):
each request's coroutine awaits its own answer.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable, Generic, Sequence, TypeVar

__all__ = ["Batcher", "Returning", "GAP_S"]

Item = TypeVar("Item")

# Longest pause between two requests of clients that send together, before the batch stops waiting for more.
GAP_S = 0.002


class Returning:
    """The connections answered within the last ``window_s`` that have not sent another request since.

    A client in a closed loop sends its next request as soon as it has its answer, on the
    same keep-alive connection, so these are the requests that may come in a moment.
    """

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._answered: dict[Any, float] = {}  # connection -> when it was answered, oldest first

    def arrived(self, connection: Any) -> None:
        """A request came on ``connection``."""
        self._answered.pop(connection, None)

    def answered(self, connection: Any) -> None:
        """The request on ``connection`` was answered."""
        self._answered.pop(connection, None)
        self._answered[connection] = time.monotonic()

    def __len__(self) -> int:
        answered, since = self._answered, time.monotonic() - self.window_s
        while answered:
            oldest = next(iter(answered))
            if answered[oldest] >= since:
                break
            del answered[oldest]
        return len(answered)


class Batcher(Generic[Item]):
    """Groups concurrent ``submit`` calls into calls of ``call`` on lists of items.

    Args:
        call: Answers a list of items with a list of results, one each and in order (a result
            may be an exception instance: it is the answer). Runs on the event loop.
        max_size: Most items one call takes.
        wait_s: Longest time the first item of a batch waits for others.
        in_flight: How many requests the replica holds now (those waiting here included).
        returning: How many more requests may come in a moment (clients answered a moment ago).
        gap_s: Longest pause between arrivals while only those are waited for.
    """

    def __init__(self, call: Callable[[list[Item]], Sequence[Any]], *, max_size: int, wait_s: float,
                 in_flight: Callable[[], int], returning: Callable[[], int], gap_s: float = GAP_S) -> None:
        self.call = call
        self.max_size, self.wait_s, self.gap_s = max_size, wait_s, min(gap_s, wait_s)
        self.in_flight, self.returning = in_flight, returning
        self._pending: list[tuple[Item, asyncio.Future]] = []
        self._started = 0.0  # when the batch's first item arrived
        self._timer: asyncio.TimerHandle | None = None

    async def submit(self, item: Item) -> Any:
        """The result of ``call`` for ``item``, in a batch with whatever else is waiting."""
        future = asyncio.get_running_loop().create_future()
        if not self._pending:
            self._started = time.monotonic()
        self._pending.append((item, future))
        self.check()
        return await future

    def check(self) -> None:
        """Answer the batch if it should stop waiting, or set when it will (also called when a request leaves)."""
        count = len(self._pending)
        if not count:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        in_flight = self.in_flight()
        if count >= self.max_size or count >= in_flight + self.returning():
            return self._flush()
        left = self.wait_s - (time.monotonic() - self._started)
        if count >= in_flight:  # only clients answered a moment ago may send more: wait while requests keep coming
            left = min(left, self.gap_s)
        if left <= 0:
            return self._flush()
        self._timer = asyncio.get_running_loop().call_later(left, self._flush)

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending = self._pending[:self.max_size], self._pending[self.max_size:]
        if self._pending:
            self._started = time.monotonic()
        batch = [(item, future) for item, future in batch if not future.done()]  # done: the client went away
        if batch:
            try:
                results = self.call([item for item, _ in batch])
            except Exception as exc:  # noqa: BLE001 - every request of the batch gets the server's error
                results = [exc] * len(batch)
            for (_, future), result in zip(batch, results):
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)
        if self._pending:
            self.check()
