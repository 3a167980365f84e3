"""The Ray Serve application: one autoscaled deployment whose replicas each hold the model and its HTTP app.

A replica loads the model in ``reconfigure`` (Serve's ``user_config``), so a
reload that names a new version is a lightweight update: every replica loads the
new version beside the old one, then swaps model and HTTP app in one assignment.
Requests already running finish on the old model; none is refused.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import json
import logging
import math
import random
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

from ray import serve

from raymlx import _compat
from raymlx.serve._batching import Batcher, Returning
from raymlx.serve.app import Answer, BodyLimit, Limits, ModelInputError, answer_batch, build_app
from raymlx.serve.model import ModelRef, ServedModel
from raymlx.spec import ServeSpec

__all__ = ["APP_NAME", "ChampionServer", "serve_options", "champion_application"]

logger = logging.getLogger(__name__)

APP_NAME = "raymlx"

# Autoscaling that reacts in seconds on a small machine (Serve's defaults wait 30 s to add a replica
# and 10 min to remove one). `metrics_interval_s` is deprecated in favour of an environment variable,
# but it is the setting that still works on a Ray cluster raymlx joins rather than starts.
FAST_AUTOSCALING = {"upscale_delay_s": 2.0, "downscale_delay_s": 20.0, "look_back_period_s": 3.0,
                    "metrics_interval_s": 0.5}


# Per request: whether its model call answered other requests too (its client may come back with them).
_SHARED: contextvars.ContextVar[list[bool] | None] = contextvars.ContextVar("raymlx_shared_call", default=None)


class _SwappableApp:
    """The ASGI app of the replica: the body limit, then whichever model app is current.

    It counts the HTTP requests in flight and keeps which connections were answered a
    moment ago by a model call they shared with others, so that a batch stops waiting once
    it holds every request this replica has and may soon have (see
    :mod:`raymlx.serve._batching`), and calls ``on_leave`` as each request ends. A client
    answered alone is not waited for: sparse clients never wait for one another. And it closes about one keep-alive
    connection in ``RECONNECT_EVERY`` responses: the relay balances connections, so
    clients that reconnect now and then spread over the replicas the autoscaler adds.
    """

    RECONNECT_EVERY = 200

    def __init__(self, max_body_bytes: int, returning_s: float) -> None:
        self.current: Any = None
        self.in_flight = 0
        self.returning = Returning(returning_s)
        self.on_leave: Callable[[], None] = lambda: None
        self._guarded = BodyLimit(self._dispatch, max_body_bytes)
        self._random = random.Random()

    async def _dispatch(self, scope, receive, send) -> None:
        if self._random.random() * self.RECONNECT_EVERY >= 1:
            return await self.current(scope, receive, send)

        async def send_closing(message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)

        await self.current(scope, receive, send_closing)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            return  # the model apps have no startup work; Serve runs the replica's own
        connection = scope.get("client")
        self.returning.arrived(connection)
        self.in_flight += 1
        shared = [False]  # set by ChampionServer._predict when the request's model call answered others too
        token = _SHARED.set(shared)
        try:
            await self._guarded(scope, receive, send)
        finally:
            _SHARED.reset(token)
            self.in_flight -= 1
            if shared[0]:
                self.returning.answered(connection)
            self.on_leave()  # a batch waiting for this request may stop waiting


@serve.ingress()
class ChampionServer:
    """A replica: the model, its FastAPI app, and batching of ``/predict`` across concurrent requests."""

    def __init__(self, limits: dict, batching: dict) -> None:
        self._limits = Limits(**limits)
        wait_s = batching["batch_wait_timeout_s"]
        self._asgi = _SwappableApp(self._limits.max_body_bytes, returning_s=wait_s)
        self._model: ServedModel | None = None
        self._batcher: Batcher[tuple[ServedModel, list]] = Batcher(
            _answer_batch, max_size=batching["max_batch_size"], wait_s=wait_s,
            in_flight=lambda: self._asgi.in_flight, returning=lambda: len(self._asgi.returning))
        self._asgi.on_leave = self._batcher.check

    def __serve_build_asgi_app__(self):
        return self._asgi

    async def reconfigure(self, config: dict) -> None:
        """Load the model ``config['model']`` names, then swap it in with an app built from its signature."""
        ref = ModelRef(**config["model"])
        if self._model is not None and self._model.ref == ref:
            return
        model = await asyncio.to_thread(ServedModel.load, ref)
        app = build_app(model, self._predict, limits=self._limits)
        self._model, self._asgi.current = model, app
        logger.info("serving %s", ref.pinned_uri)

    async def _predict(self, model: ServedModel, records: list) -> Answer:
        result = await self._batcher.submit((model, records))
        shared = _SHARED.get()
        if shared is not None and result.batch_size > 1:
            shared[0] = True
        return result


def _answer_batch(items: list[tuple[ServedModel, list]]) -> Sequence[Answer | ModelInputError]:
    """One frame and one model call for the whole batch (requests that came in during a reload: one model each)."""
    model = items[0][0]
    if all(m is model for m, _ in items):
        return answer_batch(model, [records for _, records in items])
    return [answer_batch(m, [records])[0] for m, records in items]


@dataclass(frozen=True)
class ServeOptions:
    """Deployment settings derived from the spec's ``serve`` section."""

    autoscaling: dict
    batching: dict
    limits: dict
    max_ongoing_requests: int
    max_queued_requests: int
    num_cpus: float


def serve_options(spec: ServeSpec, *, limits: Limits | None = None, num_cpus: float | None = None) -> ServeOptions:
    """Ray Serve settings from ``serve:`` in the spec (autoscaling, batching, admission limits, CPUs per
    replica, which ``num_cpus`` overrides)."""
    auto = spec.autoscaling
    batching = {"max_batch_size": spec.batching.max_batch_size,
                "batch_wait_timeout_s": spec.batching.batch_wait_timeout_s}
    # A replica takes a full batch at once; past that, each replica queues a few batches' worth
    # and answers 503 to the rest, so that overload sheds load instead of growing latency.
    max_ongoing = max(spec.batching.max_batch_size, math.ceil(2 * auto.target_ongoing_requests))
    max_queued = 4 * max_ongoing
    autoscaling = {"min_replicas": auto.min_replicas, "max_replicas": auto.max_replicas,
                   "initial_replicas": max(auto.min_replicas, 1),
                   "target_ongoing_requests": auto.target_ongoing_requests, **FAST_AUTOSCALING}
    return ServeOptions(autoscaling, batching, asdict(limits or Limits()), max_ongoing, max_queued,
                        spec.num_cpus if num_cpus is None else num_cpus)


def champion_application(ref: ModelRef, options: ServeOptions):
    """The bound Serve application serving ``ref`` with ``options``.

    The deployment's version is a hash of everything but the model, so deploying a
    new model with the same options is an in-place ``reconfigure`` of each replica.
    """
    version = hashlib.sha256(json.dumps(asdict(options), sort_keys=True).encode()).hexdigest()[:16]
    # Serve gives each `serve.run` a new random code version (a full restart of every replica)
    # unless the deployment carries one.
    deployment = _compat.versioned_deployment(
        serve.deployment(ChampionServer, name="champion"), version=version, user_config={"model": asdict(ref)},
        autoscaling_config=options.autoscaling, max_ongoing_requests=options.max_ongoing_requests,
        max_queued_requests=options.max_queued_requests, ray_actor_options={"num_cpus": options.num_cpus},
        graceful_shutdown_timeout_s=5, health_check_period_s=2,
        # No access-log line a request in the replica's log file: ~5 % of a replica's CPU at 16 clients (a
        # record built, formatted and written per request); the relay and the client see every request anyway.
        logging_config={"enable_access_log": False},
    )
    return deployment.bind(options.limits, options.batching)
