"""The relay alone, in front of small socket servers on 127.0.0.1 standing in for replicas that die: a request
no replica answers gets a 503, never a connection closed without a response."""

from __future__ import annotations

import socket
import threading

import httpx
import pytest

from raymlx.serve._control import _free_port
from raymlx.serve._relay import Relay


class DyingReplica:
    """Accepts connections, reads a request's first bytes and closes without answering; counts them."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.requests = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                if conn.recv(65536):
                    self.requests += 1


@pytest.fixture
def relay_to():
    relays = []

    def start(targets: list[tuple[str, int]]) -> str:
        relay = Relay("127.0.0.1", _free_port("127.0.0.1"), lambda: targets)
        relay.start()
        relays.append(relay)
        return f"http://127.0.0.1:{relay.port}"

    yield start
    for relay in relays:
        relay.stop()


def test_no_replica_listening_gets_503(relay_to):
    url = relay_to([("127.0.0.1", _free_port("127.0.0.1"))])
    reply = httpx.post(url + "/predict", json={"records": []}, timeout=10)
    assert reply.status_code == 503 and "no replica is available" in reply.json()["error"]


def test_request_is_resent_once_then_503(relay_to):
    first, second = DyingReplica(), DyingReplica()
    url = relay_to([("127.0.0.1", first.port), ("127.0.0.1", second.port)])
    reply = httpx.post(url + "/predict", json={"records": []}, timeout=10)
    assert reply.status_code == 503 and "closed the connection before answering" in reply.json()["error"]
    assert (first.requests, second.requests) == (1, 1)  # sent to the other replica once, not around for ever
