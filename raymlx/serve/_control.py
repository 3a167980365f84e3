"""Starting, reloading and stopping the Serve application in a running Ray runtime."""

from __future__ import annotations

import functools
import ipaddress
import json
import logging
import socket
import time
import urllib.request
from dataclasses import dataclass

import ray
from ray import serve

from raymlx import _compat
from raymlx.errors import UserInputError
from raymlx.serve._relay import Relay
from raymlx.serve.deployment import APP_NAME, ServeOptions, champion_application
from raymlx.serve.model import ModelRef

__all__ = ["Running", "start_app", "reload_app", "stop_app", "wait_healthy", "replica_targets",
           "replica_host", "SERVE_ENV"]

logger = logging.getLogger(__name__)

# Set in the environment of the Ray runtime before it starts (Serve reads them when its processes start):
# Serve's throughput-optimized mode, in which each replica answers HTTP on its own port (direct ingress)
# and runs user code on its main event loop; measured 5-8x the requests/s of Serve's proxy on two cores
# (benchmarks/serve). Replicas drain for 2 s when stopped instead of 30 s: nothing but our relay
# balances over them, and it re-reads the replicas every second.
SERVE_ENV = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_DIRECT_INGRESS": "1",
             "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "2"}


@dataclass
class Running:
    """A served application: its URL and the relay in front of its replicas."""

    url: str
    relay: Relay


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


@functools.lru_cache(maxsize=8)
def _node_address(node_id: str) -> str:
    """The address Ray's nodes know node ``node_id`` by (what Serve lists its replicas at). A driver's own guess
    (``ray.util.get_node_ip_address``) can differ: the machine's address for a node started on 127.0.0.1."""
    known = next((n["NodeManagerAddress"] for n in ray.nodes() if n["NodeID"] == node_id), None)
    return known or ray.util.get_node_ip_address()


def _here() -> str:
    return _node_address(ray.get_runtime_context().get_node_id())


def replica_host(host: str, *, joined: bool) -> str:
    """The address every replica binds on its own node (Serve takes one for all nodes).

    A runtime this run started itself is one node on loopback: replicas bind ``host``, as the
    relay does. A runtime the run joined may span machines, and the relay on this node reaches a
    replica on another at that node's address: replicas bind every interface (``0.0.0.0``), like
    Ray's own ports between the nodes. Whether the run joined is the rule, not how many nodes are
    alive now: nodes join later. Only when Ray knows this node by a loopback address (no other
    machine can join) do replicas keep ``host``.
    """
    if not joined or ipaddress.ip_address(_here()).is_loopback:
        return host
    return "0.0.0.0"


def replica_targets(host: str, proxy_port: int | None = None) -> list[tuple[str, int]]:
    """The replicas' own HTTP addresses (or Serve's proxy, when direct ingress is off or the
    controller cannot be asked for them).

    Replicas on this node are reached at ``host`` (the address they bind, or loopback when they
    bind every interface), the others at their node's address.
    """
    targets = _compat.serve_target_groups(APP_NAME)
    if targets is None:
        return [(host, proxy_port)] if proxy_port is not None else []
    here = _here()
    return [(host if ip == here else ip, port) for ip, port in targets]


def start_app(ref: ModelRef, options: ServeOptions, *, host: str, port: int, joined: bool = False,
              timeout_s: float = 120) -> Running:
    """Deploy the model as the Serve application, put the relay on ``host:port``, wait until it answers.

    Serve's own proxy gets a free port of its own: the relay, on the asked-for address,
    reaches the replicas directly when direct ingress is on, and Serve's proxy otherwise.
    ``joined``: the Ray runtime is one the run joined, not started (see :func:`replica_host`).
    """
    bind = replica_host(host, joined=joined)
    proxy_port = _free_port(bind)
    local = host if bind == host else "127.0.0.1"  # where this node's replicas (and Serve's proxy) answer
    # The relay keeps a request to send it again until its answer starts: up to the body limit and a head.
    relay = Relay(host, port, lambda: replica_targets(local, proxy_port),
                  max_replay_bytes=options.limits["max_body_bytes"] + (64 << 10))
    try:
        relay.start()  # first: a taken port fails before anything is deployed
    except OSError as exc:
        raise UserInputError(f"cannot listen on {host}:{port} ({exc.strerror or exc}): "
                             f"is another server there? Choose another serve.port") from None
    url = f"http://{host}:{port}"
    try:
        if bind != host:
            logger.info("replicas listen on %s of their nodes: the relay reaches them there", bind)
        serve.start(http_options={"host": bind, "port": proxy_port})
        serve.run(champion_application(ref, options), name=APP_NAME, route_prefix="/", blocking=False)
        wait_healthy(url, version=ref.version, timeout_s=timeout_s)
    except BaseException:
        relay.stop()
        raise
    return Running(url, relay)


def reload_app(ref: ModelRef, options: ServeOptions, *, url: str, timeout_s: float = 120) -> None:
    """Roll the running application to ``ref`` (each replica swaps in place) and wait until it serves it."""
    serve.run(champion_application(ref, options), name=APP_NAME, route_prefix="/", blocking=False)
    wait_healthy(url, version=ref.version, timeout_s=timeout_s)


def stop_app(running: Running | None = None) -> None:
    """Stop the relay, then shut Serve down in this Ray runtime."""
    if running is not None:
        running.relay.stop()
    serve.shutdown()


def wait_healthy(url: str, *, version: str | None, timeout_s: float) -> None:
    """Poll ``/health`` until it answers with ``version`` (any version when ``None``).

    Raises:
        TimeoutError: When it does not within ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as reply:
                served = json.loads(reply.read()).get("version")
            if version is None or served == version:
                return
            last = f"serving version {served}"
        except (OSError, ValueError) as exc:  # URLError, refused, reset, not JSON yet
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not serve version {version} within {timeout_s:.0f} s (last: {last})")
