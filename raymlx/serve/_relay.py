"""A small TCP relay on the served URL that spreads client connections over the replicas' own ports.

Ray Serve's direct ingress lets each replica answer HTTP itself (five times the
throughput of Serve's Python proxy on two cores), but on a port of its own that
changes as replicas come and go. The relay listens on the one address the user
asked for (127.0.0.1:8000 by default) and hands each new connection to the next
replica in turn, re-reading the replicas from the Serve controller every second.
It copies bytes and never parses HTTP, so it costs little. Unlike Serve's HAProxy
mode, it opens no other port and binds only the address asked for.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from typing import Callable

__all__ = ["Relay"]

logger = logging.getLogger(__name__)

Targets = Callable[[], list[tuple[str, int]]]


def _new_loop() -> asyncio.AbstractEventLoop:
    try:  # uvloop (installed with Ray Serve's uvicorn) relays with less CPU
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()


class _Pipe(asyncio.Protocol):
    """One side of a relayed connection; writes what it reads to its peer."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: _Pipe | None = None
        self.pending: list[bytes] = []

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.write(data)
        else:
            self.pending.append(data)

    def connection_lost(self, exc) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()

    def pause_writing(self) -> None:  # the peer reads faster than this side can send
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()


class _ClientSide(_Pipe):
    def __init__(self, relay: Relay) -> None:
        super().__init__()
        self.relay = relay

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        transport.pause_reading()
        task = asyncio.ensure_future(self._connect())
        self.relay.tasks.add(task)  # a task nobody holds may be garbage-collected before it runs
        task.add_done_callback(self.relay.tasks.discard)

    async def _connect(self) -> None:
        for host, port in self.relay.next_targets():
            try:
                _, backend = await asyncio.get_running_loop().create_connection(_Pipe, host, port)
            except OSError:
                continue
            backend.peer, self.peer = self, backend
            for chunk in self.pending:
                backend.transport.write(chunk)
            self.pending.clear()
            self.transport.resume_reading()
            return
        logger.warning("no replica to relay a connection to")
        self.transport.close()


class Relay:
    """Listens on ``host:port`` in a thread of its own and relays each connection to a replica.

    Args:
        host: Address to bind.
        port: Port to bind.
        targets: Returns the replicas' ``(host, port)``; called every ``refresh_s`` seconds.
    """

    def __init__(self, host: str, port: int, targets: Targets, *, refresh_s: float = 1.0) -> None:
        self.host, self.port = host, port
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
        self._server = await self._loop.create_server(lambda: _ClientSide(self), self.host, self.port,
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
