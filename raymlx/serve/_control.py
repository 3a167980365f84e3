"""Starting, reloading and stopping the Serve application in a running Ray runtime."""

from __future__ import annotations

import logging
import time

import httpx
from ray import serve

from raymlx.serve.deployment import APP_NAME, ServeOptions, champion_application
from raymlx.serve.model import ModelRef

__all__ = ["start_app", "reload_app", "stop_app", "wait_healthy"]

logger = logging.getLogger(__name__)


def start_app(ref: ModelRef, options: ServeOptions, *, host: str, port: int, timeout_s: float = 120) -> str:
    """Deploy the model as the Serve application and wait until it answers.

    Returns:
        The URL of the application.
    """
    serve.start(http_options={"host": host, "port": port})
    serve.run(champion_application(ref, options), name=APP_NAME, route_prefix="/", blocking=False)
    url = f"http://{host}:{port}"
    wait_healthy(url, version=ref.version, timeout_s=timeout_s)
    return url


def reload_app(ref: ModelRef, options: ServeOptions, *, url: str, timeout_s: float = 120) -> None:
    """Roll the running application to ``ref`` (each replica swaps in place) and wait until it serves it."""
    serve.run(champion_application(ref, options), name=APP_NAME, route_prefix="/", blocking=False)
    wait_healthy(url, version=ref.version, timeout_s=timeout_s)


def stop_app() -> None:
    """Delete the application and shut Serve down in this Ray runtime."""
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
            reply = httpx.get(f"{url}/health", timeout=2)
            if reply.status_code == 200 and (version is None or reply.json().get("version") == version):
                return
            last = f"{reply.status_code} {reply.text[:200]}"
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not serve version {version} within {timeout_s:.0f} s (last: {last})")
