"""How raymlx learns that a node it started is up (a guarded private Ray API, see raymlx._compat)."""

from __future__ import annotations

import time

from raymlx._compat import _wait_for_node


def test_a_registered_node_is_found_at_once(ray_runtime):
    context = ray_runtime.get_runtime_context()
    started = time.monotonic()
    _wait_for_node(context.gcs_address, context.get_node_id(), timeout_s=10)
    assert time.monotonic() - started < 1.0  # Ray's own wait would sleep a second between asks


def test_an_unknown_node_is_waited_for_until_the_timeout(ray_runtime):
    context = ray_runtime.get_runtime_context()
    started = time.monotonic()
    _wait_for_node(context.gcs_address, "ab" * 28, timeout_s=0.5)
    assert 0.5 <= time.monotonic() - started < 3.0
