"""The ``raymlx serve`` process: run in the foreground until Ctrl-C, detach, stop, and reload by signal.

A running server writes a small state file (``~/.raymlx/serve/PORT.json``, or under
``$RAYMLX_HOME``) with its pid, URL and model. ``--stop`` sends it SIGTERM and
``--reload`` SIGHUP: the server then pins the model URI (``models:/NAME@champion``)
again and rolls its replicas to the version the alias names now.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from raymlx.errors import RaymlxError, UserInputError

__all__ = ["ServeRequest", "state_dir", "read_states", "find_state", "serve_foreground", "detach", "stop", "reload",
           "NotRunning"]

logger = logging.getLogger(__name__)


class NotRunning(UserInputError):
    """No raymlx server matches (``--stop`` / ``--reload`` without one running)."""


@dataclass(frozen=True)
class ServeRequest:
    """Everything a server process needs, from the command line and the spec."""

    model_uri: str
    tracking_uri: str
    host: str
    port: int
    serve: dict           # the spec's serve section (ServeSpec fields)
    runtime: dict         # the spec's runtime section (RuntimeSpec fields)
    address: str | None
    base_dir: str


def state_dir() -> Path:
    return Path(os.environ.get("RAYMLX_HOME", Path.home() / ".raymlx")) / "serve"


def _state_path(port: int) -> Path:
    return state_dir() / f"{port}.json"


def read_states() -> list[dict]:
    """State of every server that looks alive (stale files of dead processes are removed)."""
    states = []
    for path in sorted(state_dir().glob("*.json")):
        try:
            state = json.loads(path.read_text())
            os.kill(state["pid"], 0)
        except PermissionError:  # alive, but another user's
            continue
        except (OSError, ValueError, KeyError):
            path.unlink(missing_ok=True)
            continue
        states.append(state)
    return states


def find_state(port: int | None) -> dict:
    """The running server on ``port``, or the only one when ``port`` is ``None``.

    Raises:
        NotRunning: When there is none, or several and no port says which.
    """
    states = [s for s in read_states() if port is None or s["port"] == port]
    if not states:
        raise NotRunning("no raymlx server is running" + (f" on port {port}" if port else ""))
    if len(states) > 1:
        raise NotRunning("several raymlx servers are running (" + ", ".join(s["url"] for s in states)
                         + "): name the spec whose serve.port says which")
    return states[0]


def _write_state(request: ServeRequest, url: str, version: str | None) -> None:
    import ray

    path = _state_path(request.port)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"pid": os.getpid(), "url": url, "port": request.port, "version": version,
             "ray_address": ray.get_runtime_context().gcs_address, "request": asdict(request)}
    path.write_text(json.dumps(state))


def serve_foreground(request: ServeRequest, *, on_ready: Callable[[str, str | None], None]) -> None:
    """Start (or join) Ray, serve the model, and block until SIGINT/SIGTERM; SIGHUP reloads.

    Args:
        request: What to serve and where.
        on_ready: Called with the URL and served version once the application answers.
    """
    from raymlx.serve._control import SERVE_ENV

    for key, value in SERVE_ENV.items():
        os.environ.setdefault(key, value)  # read by the Ray processes this one starts
    import ray

    from raymlx.serve._control import reload_app, start_app, stop_app
    from raymlx.serve.deployment import serve_options
    from raymlx.serve.model import resolve_model
    from raymlx.spec import RuntimeSpec, ServeSpec
    from raymlx.runtime import cluster_address, init_ray, shutdown_ray

    ref = resolve_model(request.model_uri, tracking_uri=request.tracking_uri)
    options = serve_options(ServeSpec(**request.serve))
    runtime = RuntimeSpec(**request.runtime)
    joined = cluster_address(runtime, request.address) is not None
    started = init_ray(runtime, address=request.address, base_dir=request.base_dir,
                       env_vars=SERVE_ENV)  # on a cluster, Serve's processes get them from the job's environment
    flags = {"stop": False, "reload": False}
    running, previous = None, {}
    try:
        # Ctrl-C here: KeyboardInterrupt
        running = start_app(ref, options, host=request.host, port=request.port, joined=joined)
        previous = _install_signals(flags)
        _write_state(request, running.url, ref.version)
        on_ready(running.url, ref.version)
        while not flags["stop"]:
            time.sleep(0.2)
            if flags["reload"]:
                flags["reload"] = False
                ref = _reload(request, ref, options, running.url, reload_app, resolve_model)
    finally:
        _state_path(request.port).unlink(missing_ok=True)
        stop_app(running)
        if started:
            shutdown_ray()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _install_signals(flags: dict) -> dict:
    """SIGINT (Ctrl-C) and SIGTERM stop the server, SIGHUP reloads it; returns the handlers replaced.

    SIGINT gets a handler of its own: a process started in the background by a shell
    inherits SIGINT ignored, and a server should still stop on it.
    """
    def on_stop(signum, frame):
        flags["stop"] = True

    def on_reload(signum, frame):
        flags["reload"] = True

    handlers = {signal.SIGINT: on_stop, signal.SIGTERM: on_stop, signal.SIGHUP: on_reload}
    previous = {signum: signal.getsignal(signum) for signum in handlers}
    for signum, handler in handlers.items():
        signal.signal(signum, handler)
    return previous


def _reload(request: ServeRequest, ref, options, url: str, reload_app, resolve_model):
    """Pin the URI again and roll to the version it names now; on failure keep serving the old one."""
    try:
        new = resolve_model(request.model_uri, tracking_uri=request.tracking_uri)
        if new != ref:
            reload_app(new, options, url=url)
        _write_state(request, url, new.version)
        logger.info("serving %s (version %s)", new.pinned_uri, new.version)
        return new
    except Exception as exc:  # noqa: BLE001 - a failed reload must not stop the server
        logger.error("reload failed, still serving version %s: %s", ref.version, exc)
        return ref


def detach(argv: list[str], request: ServeRequest, *, timeout_s: float = 300) -> dict:
    """Run ``raymlx serve`` (``argv`` without ``--detach``) in a new session; return its state once it serves.

    Raises:
        RaymlxError: When it exits or does not serve within ``timeout_s`` (its log says why).
    """
    log = state_dir() / f"{request.port}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        child = subprocess.Popen([sys.executable, "-m", "raymlx.cli", *argv], stdin=subprocess.DEVNULL,
                                 stdout=out, stderr=out, start_new_session=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RaymlxError(f"the server exited with code {child.returncode}; see {log}")
        state = next((s for s in read_states() if s["pid"] == child.pid), None)
        if state is not None:
            return state
        time.sleep(0.5)
    raise RaymlxError(f"the server did not start within {timeout_s:.0f} s; see {log}")


def stop(port: int | None, *, timeout_s: float = 60) -> dict:
    """Stop a running server (SIGTERM) and wait until it has exited."""
    state = find_state(port)
    os.kill(state["pid"], signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(state["pid"], 0)
        except OSError:
            return state
        time.sleep(0.2)
    raise RaymlxError(f"the server (pid {state['pid']}) did not stop within {timeout_s:.0f} s")


def reload(port: int | None, *, timeout_s: float = 180) -> dict:
    """Ask a running server to roll to the version its model URI names now; wait until it serves it."""
    from raymlx.serve._control import wait_healthy
    from raymlx.serve.model import resolve_model

    state = find_state(port)
    request = ServeRequest(**state["request"])
    target = resolve_model(request.model_uri, tracking_uri=request.tracking_uri)
    os.kill(state["pid"], signal.SIGHUP)
    wait_healthy(state["url"], version=target.version, timeout_s=timeout_s)
    return {**state, "version": target.version}
