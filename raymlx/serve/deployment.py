"""The Ray Serve application: one autoscaled deployment whose replicas each hold the model and its HTTP app.

A replica loads the model in ``reconfigure`` (Serve's ``user_config``), so a
reload that names a new version is a lightweight update: every replica loads the
new version beside the old one, then swaps model and HTTP app in one assignment.
Requests already running finish on the old model; none is refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import random
from dataclasses import asdict, dataclass
from typing import Any

from ray import serve

from raymlx import _compat
from raymlx.serve.app import Answer, BodyLimit, Limits, ModelInputError, answer_batch, build_app
from raymlx.serve.model import ModelRef, ServedModel
from raymlx.spec import ServeSpec

__all__ = ["APP_NAME", "ChampionServer", "serve_options", "champion_deployment", "champion_application"]

logger = logging.getLogger(__name__)

APP_NAME = "raymlx"

# Autoscaling that reacts in seconds on a small machine (Serve's defaults wait 30 s to add a replica
# and 10 min to remove one). `metrics_interval_s` is deprecated in favour of an environment variable,
# but it is the setting that still works on a Ray cluster raymlx joins rather than starts.
FAST_AUTOSCALING = {"upscale_delay_s": 2.0, "downscale_delay_s": 20.0, "look_back_period_s": 3.0,
                    "metrics_interval_s": 0.5}


class _SwappableApp:
    """The ASGI app of the replica: the body limit, then whichever model app is current.

    It counts the HTTP requests in flight, so that a batch stops waiting once it
    holds every request this replica has (see :func:`_batch_size`). And it closes
    about one keep-alive connection in ``RECONNECT_EVERY`` responses: the relay
    balances connections, so clients that reconnect now and then spread over the
    replicas the autoscaler adds.
    """

    RECONNECT_EVERY = 200

    def __init__(self, max_body_bytes: int, max_batch_size: int) -> None:
        self.current: Any = None
        self.in_flight = 0
        self.max_batch_size = max_batch_size
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
        self.in_flight += 1
        try:
            await self._guarded(scope, receive, send)
        finally:
            self.in_flight -= 1


def _batch_size(items: list) -> int:
    """Requests in a batch, or "full" once it holds every request in flight in the replica:
    waiting longer could only delay them (a lone request is answered at once)."""
    app = items[0][2]
    return app.max_batch_size if len(items) >= app.in_flight else len(items)


@serve.ingress()
class ChampionServer:
    """A replica: the model, its FastAPI app, and batching of ``/predict`` across concurrent requests."""

    def __init__(self, limits: dict, batching: dict) -> None:
        self._limits = Limits(**limits)
        self._asgi = _SwappableApp(self._limits.max_body_bytes, batching["max_batch_size"])
        self._model: ServedModel | None = None
        self._predict_batch.set_max_batch_size(batching["max_batch_size"])  # type: ignore[attr-defined]  # @serve.batch's
        self._predict_batch.set_batch_wait_timeout_s(batching["batch_wait_timeout_s"])  # type: ignore[attr-defined]

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
        result = await self._predict_batch((model, records, self._asgi))
        if isinstance(result, ModelInputError):
            raise result
        return result

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.01, batch_size_fn=_batch_size)
    async def _predict_batch(self, items: list[tuple[ServedModel, list, _SwappableApp]]) -> list:
        """One frame and one model call for the whole batch (a request that fails alone gets its error; requests
        that came in during a reload: one model each)."""
        model = items[0][0]
        if all(m is model for m, _, _ in items):
            return list(answer_batch(model, [records for _, records, _ in items]))
        return [answer_batch(m, [records])[0] for m, records, _ in items]


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


def champion_deployment(ref: ModelRef, options: ServeOptions):
    """The Serve deployment serving ``ref`` with ``options``, before its arguments are bound.

    The deployment's version is a hash of everything but the model, so deploying a
    new model with the same options is an in-place ``reconfigure`` of each replica.
    """
    version = hashlib.sha256(json.dumps(asdict(options), sort_keys=True).encode()).hexdigest()[:16]
    # Serve gives each `serve.run` a new random code version (a full restart of every replica)
    # unless the deployment carries one.
    return _compat.versioned_deployment(
        serve.deployment(ChampionServer, name="champion"), version=version, user_config={"model": asdict(ref)},
        autoscaling_config=options.autoscaling, max_ongoing_requests=options.max_ongoing_requests,
        max_queued_requests=options.max_queued_requests, ray_actor_options={"num_cpus": options.num_cpus},
        graceful_shutdown_timeout_s=5, health_check_period_s=2,
        # No access-log line a request in the replica's log file: 5 to 8 % of a replica's time at 16 clients
        # (a record built, formatted and written per request); the relay and the client see every request anyway.
        # Serve still builds each request's access-log record and only then drops it (about 5 µs a request):
        # at WARNING its logger skips that too. Serve's warnings and errors are still logged.
        logging_config={"enable_access_log": False, "log_level": "WARNING"},
    )


def champion_application(ref: ModelRef, options: ServeOptions):
    """The bound Serve application serving ``ref`` with ``options`` (see :func:`champion_deployment`)."""
    return champion_deployment(ref, options).bind(options.limits, options.batching)
