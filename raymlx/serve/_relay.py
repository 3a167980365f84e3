"""A small TCP relay on the served URL that spreads client connections over the replicas' own ports.

Ray Serve's direct ingress lets each replica answer HTTP itself (five times the
throughput of Serve's Python proxy on two cores), but on a port of its own that
changes as replicas come and go. The relay listens on the one address the user
asked for (127.0.0.1:8000 by default) and hands each new connection to the next
replica in turn, re-reading the replicas from the Serve controller every second.
Unlike Serve's HAProxy mode, it opens no other port and binds only the address asked for.

It copies bytes, and reads the requests only as far as llhttp (a C parser) needs to
find where each begins (see :mod:`raymlx.serve._requests`). So it can refuse a request
whose head is over the limits before any replica reads it, and, when a replica's
connection closes before it has sent a byte of the answer (a replica killed or
stopped, a keep-alive connection closed as a request arrives), send the request
again to another replica; when no replica can take it, the client gets a 503,
never a connection closed without a response.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from typing import Callable

from raymlx.serve._requests import HeadLimits, RequestReader, RequestRefused, error_response

__all__ = ["Relay", "HeadLimits"]

logger = logging.getLogger(__name__)

Targets = Callable[[], list[tuple[str, int]]]

# After answering a request itself, the relay reads (and drops) what the client still sends for this long
# before it closes: closing with unread bytes would reset the connection and the client could lose the answer.
LINGER_S = 2.0


def _new_loop() -> asyncio.AbstractEventLoop:
    try:  # uvloop (installed with Ray Serve's uvicorn) relays with less CPU
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()


class _Backend(asyncio.Protocol):
    """The connection to a replica; hands what it reads to its client."""

    transport: asyncio.Transport  # set by connection_made, before any other callback

    def __init__(self, client: _Client) -> None:
        self.client = client

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.client.answer_received(data)

    def connection_lost(self, exc) -> None:
        self.client.backend_lost(self)

    def pause_writing(self) -> None:  # the client sends faster than the replica reads
        self.client.transport.pause_reading()

    def resume_writing(self) -> None:
        self.client.transport.resume_reading()


class _Client(asyncio.Protocol):
    """A client's connection: its requests go to one replica, and to another when that one goes away unanswering.

    ``awaiting`` is true from the start of a request until the replica sends a byte of
    the answer; ``replay`` then holds the bytes from that request's start (``None`` when
    they cannot be replayed: too many, or the chunk began inside an earlier request).
    """

    transport: asyncio.Transport  # set by connection_made, before any other callback

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.reader = RequestReader(relay.head_limits)
        self.backend: _Backend | None = None
        self.target: tuple[str, int] | None = None
        self.unsent: list[bytes] = []
        self.awaiting = False
        self.replay: list[bytes] | None = None
        self.replay_size = 0
        self.retries = 0
        self.connecting = self.done = False

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.done:
            return  # answered by the relay: drain what the client still sends
        try:
            self.reader.feed(data)
        except RequestRefused as exc:
            return self.finish(exc.status, str(exc))
        self._track(data)
        if self.backend is not None:
            self.backend.transport.write(data)
            return
        self.unsent.append(data)
        if not self.connecting:  # the first bytes since the client connected or its replica closed idle
            self._start_connect(avoid=None)

    def _track(self, data: bytes) -> None:
        reader = self.reader
        if reader.began and not self.awaiting:
            self.replay, self.replay_size, self.retries = ([] if reader.at_start else None), 0, 0
            self.awaiting = True
        if self.awaiting and self.replay is not None:
            self.replay.append(data)
            self.replay_size += len(data)
            if self.replay_size > self.relay.max_replay_bytes:
                self.replay = None

    def answer_received(self, data: bytes) -> None:
        self.awaiting, self.replay = False, None
        self.transport.write(data)

    def backend_lost(self, backend: _Backend) -> None:
        if backend is not self.backend or self.done:
            return
        self.backend = None
        if not self.awaiting:  # idle, or in the middle of an answer: nothing to resend
            self.transport.close()
        elif self.replay is not None and self.retries < self.relay.max_retries:
            self.retries += 1
            logger.info("replica %s closed before answering; resending the request", self.target)
            self.unsent = []
            self._start_connect(avoid=self.target)
        else:
            self.finish(503, "the replica closed the connection before answering; try again")

    def _start_connect(self, *, avoid: tuple[str, int] | None) -> None:
        self.connecting = True
        self.transport.pause_reading()
        task = asyncio.ensure_future(self._connect(avoid))
        self.relay.tasks.add(task)  # a task nobody holds may be garbage-collected before it runs
        task.add_done_callback(self.relay.tasks.discard)

    async def _connect(self, avoid: tuple[str, int] | None) -> None:
        try:
            await self._connect_to_one(avoid)
        finally:
            self.connecting = False

    async def _connect_to_one(self, avoid: tuple[str, int] | None) -> None:
        loop = asyncio.get_running_loop()
        for target in self.relay.next_targets():
            if target == avoid:
                continue
            try:
                transport, backend = await asyncio.wait_for(
                    loop.create_connection(lambda: _Backend(self), *target), self.relay.connect_timeout_s)
            except (OSError, asyncio.TimeoutError):
                continue
            if self.done or self.transport.is_closing():
                transport.close()
                return
            self.backend, self.target = backend, target
            for chunk in (self.replay or [] if avoid is not None else self.unsent):
                transport.write(chunk)
            self.unsent = []
            self.transport.resume_reading()
            return
        logger.warning("no replica to relay a request to")
        self.finish(503, "no replica is available; try again")

    def finish(self, status: int, message: str) -> None:
        """Answer ``status`` in place of a replica, then drain the client for a moment and close."""
        if self.done or self.transport.is_closing():
            return
        self.done = True
        if self.backend is not None:
            backend, self.backend = self.backend, None
            backend.transport.close()
        self.transport.write(error_response(status, message))
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.transport.resume_reading()
        asyncio.get_running_loop().call_later(LINGER_S, self.transport.close)

    def connection_lost(self, exc) -> None:
        self.done = True
        if self.backend is not None:
            self.backend.transport.close()

    def pause_writing(self) -> None:  # the replica answers faster than the client reads
        if self.backend is not None:
            self.backend.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.backend is not None:
            self.backend.transport.resume_reading()


class Relay:
    """Listens on ``host:port`` in a thread of its own and relays each connection to a replica.

    Args:
        host: Address to bind.
        port: Port to bind.
        targets: Returns the replicas' ``(host, port)``; called every ``refresh_s`` seconds.
        head_limits: Limits on a request's head, answered by the relay itself.
        max_replay_bytes: A request longer than this is not kept to be sent again.
        max_retries: How many other replicas one request is sent to when its replica closes unanswering.
    """

    def __init__(self, host: str, port: int, targets: Targets, *, refresh_s: float = 1.0,
                 head_limits: HeadLimits | None = None, max_replay_bytes: int = 2 << 20,
                 max_retries: int = 1, connect_timeout_s: float = 5.0) -> None:
        self.host, self.port = host, port
        self.head_limits = head_limits or HeadLimits()
        self.max_replay_bytes, self.max_retries = max_replay_bytes, max_retries
        self.connect_timeout_s = connect_timeout_s
        self._targets_fn, self._refresh_s = targets, refresh_s
        self._targets: list[tuple[str, int]] = []
        self._turn = itertools.count()
        self._loop = _new_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="raymlx-relay", daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self._stopping = threading.Event()
        self.tasks: set[asyncio.Future] = set()

    def next_targets(self) -> list[tuple[str, int]]:
        """Every replica, starting with the next one in turn."""
        targets = self._targets
        if not targets:
            return []
        start = next(self._turn) % len(targets)
        return targets[start:] + targets[:start]

    def start(self) -> None:
        """Bind the address and start relaying (raises ``OSError`` when the address is taken)."""
        self._refresh()
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(timeout=10)
        except BaseException:
            self.stop()
            raise
        threading.Thread(target=self._poll, name="raymlx-relay-targets", daemon=True).start()

    async def _serve(self) -> None:
        self._server = await self._loop.create_server(lambda: _Client(self), self.host, self.port,
                                                      reuse_address=True)

    def _refresh(self) -> None:
        try:
            targets = sorted(self._targets_fn())
        except Exception as exc:  # noqa: BLE001 - keep the last known replicas
            logger.debug("could not read the replicas: %s", exc)
            return
        if targets and targets != self._targets:
            logger.info("relaying to %s", ", ".join(f"{h}:{p}" for h, p in targets))
            self._targets = targets

    def _poll(self) -> None:
        while not self._stopping.wait(self._refresh_s):
            self._refresh()

    def stop(self) -> None:
        """Stop listening and end the thread (open connections are closed)."""
        self._stopping.set()
        if self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
