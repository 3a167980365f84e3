"""How raymlx learns that a node it started is up (a guarded private Ray API, see raymlx._compat)."""

from __future__ import annotations

import time

import pytest

from raymlx._compat import _wait_for_node


@pytest.fixture
def asks(monkeypatch) -> list[float]:
    """When raymlx asked the real GCS for its nodes (a counting wrapper around Ray's own client)."""
    import ray._raylet

    real, asked = ray._raylet.GcsClient, []

    class CountingGcsClient:
        def __init__(self, **kwargs) -> None:
            self._client = real(**kwargs)

        def get_all_node_info(self, **kwargs):
            asked.append(time.monotonic())
            return self._client.get_all_node_info(**kwargs)

    monkeypatch.setattr(ray._raylet, "GcsClient", CountingGcsClient)
    return asked


def test_a_registered_node_is_found_at_once(ray_runtime, asks):
    context = ray_runtime.get_runtime_context()
    _wait_for_node(context.gcs_address, context.get_node_id(), timeout_s=30)
    assert len(asks) == 1  # one ask, no sleep: Ray's own wait would sleep a second before asking again


def test_an_unknown_node_is_waited_for_until_the_timeout(ray_runtime, asks):
    context = ray_runtime.get_runtime_context()
    started = time.monotonic()
    _wait_for_node(context.gcs_address, "ab" * 28, timeout_s=3.0)
    waited = time.monotonic() - started
    assert len(asks) >= 2  # asked again (each ask gives up after 1 s), not once
    assert waited >= 3.0  # until the timeout
    # And no longer than its last ask (1 s at most) past it; 10 s more is slack for a loaded machine
    # (measured at a load average of 17 on 2 cores: 0.05 s past the timeout at most).
    assert waited < 3.0 + 1.0 + 10.0
