"""The HTTP interface of a served model: a FastAPI app whose request models come from its signature.

``POST /predict``, ``POST /forecast`` (forecasting champions), ``GET /health``,
``GET /metadata`` and OpenAPI docs at ``/docs``. Client mistakes are answered
with a 4xx whose ``error`` says what is wrong; only a fault of the server is a 5xx.
The app does not import Ray: :mod:`raymlx.serve.deployment` runs it in Ray Serve.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Sequence

import numpy as np
import pandas as pd
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from raymlx.serve.model import ServedModel, to_json_values
from raymlx.serve.schema import Column, error_responses, forecast_models, predict_models

__all__ = ["BATCH_SIZE_HEADER", "Limits", "Answer", "ModelInputError", "answer", "answer_batch", "build_app",
           "records_frame", "BodyLimit", "PredictShortcut"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    """What one request may ask for."""

    max_body_bytes: int = 1 << 20
    max_records: int = 10_000
    max_horizon: int = 366


@dataclass
class Answer:
    """Predictions for one request, from one model version.

    ``batch_size`` counts the requests answered by the same model call (the
    ``x-raymlx-batch-size`` response header).
    """

    predictions: list
    probabilities: list[dict[str, float]] | None
    version: str | None
    batch_size: int = 1


class ModelInputError(ValueError):
    """The model refused rows that passed the schema (a 422 for the client)."""


# Answers a request's validated records; raises ModelInputError when they cannot be a table or be predicted.
Predict = Callable[[ServedModel, list], Awaitable[Answer]]

BATCH_SIZE_HEADER = "x-raymlx-batch-size"

_DTYPES = {"double": "float64", "float": "float64", "long": "int64", "integer": "int64", "boolean": "bool"}


def records_frame(records: list, columns: list[Column]) -> pd.DataFrame:
    """Validated records as a frame with the signature's column order and types."""
    rows = [r.__dict__ for r in records]
    names = [c.name for c in columns]
    if all(_DTYPES.get(c.type) == "float64" for c in columns):  # the common case, one block: 10x faster
        matrix = np.array([[row[n] for n in names] for row in rows], dtype=float)
        return pd.DataFrame(matrix, columns=names)
    data = {}
    for column in columns:
        values = [row[column.name] for row in rows]
        dtype = _DTYPES.get(column.type)
        if dtype == "int64" and None in values:
            dtype = "float64"
        if column.type == "datetime":  # MLflow takes naive times only: those of the model are UTC
            data[column.name] = pd.to_datetime(values, utc=True).tz_localize(None)
        elif dtype == "float64":
            data[column.name] = np.array([np.nan if v is None else v for v in values], dtype=float)
        else:
            data[column.name] = np.array(values, dtype=dtype or object)
    return pd.DataFrame(data, columns=names)


def answer(model: ServedModel, frame: pd.DataFrame) -> Answer:
    """Predict ``frame`` (and class probabilities when the model has them).

    Raises:
        ModelInputError: When the model raises a ``ValueError``/``TypeError``/``KeyError`` on these rows.
    """
    try:
        predictions = to_json_values(model.predict(frame))
        classes = model.classes
        probabilities = None
        if classes:
            proba = model.predict_proba(frame)
            labels = [str(c) for c in classes]
            probabilities = [dict(zip(labels, map(float, row))) for row in proba]
    except (ValueError, TypeError, KeyError) as exc:
        raise ModelInputError(f"the model cannot predict these rows: {type(exc).__name__}: {exc}") from exc
    return Answer(predictions, probabilities, model.ref.version)


def answer_batch(model: ServedModel, requests: list[list]) -> Sequence[Answer | ModelInputError]:
    """Answer several requests' validated records with one frame and one model call.

    When the rows together cannot be made a table or predicted, each request is answered
    alone, so that only a bad one fails; its error is returned in place of its answer.
    """
    if len(requests) > 1:
        try:
            whole = _answer_records(model, [record for records in requests for record in records])
            return _split(whole, [len(records) for records in requests])
        except ModelInputError:
            pass
    return [_answer_or_error(model, records) for records in requests]


def _answer_records(model: ServedModel, records: list) -> Answer:
    try:
        frame = records_frame(records, model.columns)
    except (ValueError, TypeError) as exc:  # e.g. times with and without a time zone
        raise ModelInputError(f"cannot make a table of these records: {exc}") from exc
    return answer(model, frame)


def _answer_or_error(model: ServedModel, records: list) -> Answer | ModelInputError:
    try:
        return _answer_records(model, records)
    except ModelInputError as exc:
        return exc


def _split(whole: Answer, sizes: list[int]) -> list[Answer]:
    parts, start = [], 0
    for size in sizes:
        stop = start + size
        proba = whole.probabilities[start:stop] if whole.probabilities is not None else None
        parts.append(Answer(whole.predictions[start:stop], proba, whole.version, len(sizes)))
        start = stop
    return parts


def _error(status: int, message: str, detail: Any = None, headers: dict | None = None) -> JSONResponse:
    body = {"error": message}
    if detail is not None:
        body["detail"] = detail
    return JSONResponse(body, status_code=status, headers=headers)


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    """FastAPI's own refusals (unparseable body, unknown path, wrong method) in the documented error shape."""
    return _error(exc.status_code, str(exc.detail), headers=dict(exc.headers or {}))


def _describe(errors: list[dict]) -> str:
    """One line per pydantic error: ``records.0.bmi: Input should be a valid number (got 'abc')``."""
    lines = []
    for e in errors[:5]:
        where = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
        got = f" (got {json.dumps(e['input'], default=str)[:60]})" if "input" in e and e["type"] != "missing" else ""
        lines.append(f"{where or 'body'}: {e.get('msg', 'invalid')}{got}")
    more = f"; and {len(errors) - 5} more" if len(errors) > 5 else ""
    return "; ".join(lines) + more


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = list(exc.errors())
    if any(e.get("type") == "missing" and tuple(e.get("loc", ())) == ("body",) for e in errors):
        return _error(422, "empty body: send a JSON object (see /docs for the schema)")
    detail = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in errors[:20]]
    return _error(422, _describe(errors), detail)


def build_app(model: ServedModel, predict: Predict, *, limits: Limits) -> PredictShortcut:
    """The ASGI app of one model: a FastAPI app whose request and response schemas come from the
    model's signature, behind the shortcut that answers well-formed ``POST /predict`` requests.

    A reload builds a new app for the new model and swaps the two whole; requests
    already in the old app finish there, on the old model.

    Args:
        model: The loaded model.
        predict: Answers a request's validated records (the Serve deployment batches here).
        limits: Size limits of a request.
    """
    meta = model.metadata
    title = meta.get("registered_model") or "model"
    app = FastAPI(title=f"raymlx: {title}", version=str(meta.get("version") or ""),
                  description=f"Predictions of {model.ref.pinned_uri} ({meta.get('task') or 'pyfunc'}).")
    # Starlette types a handler as taking any Exception; each of these takes the one it is registered for.
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    _add_info_routes(app, model)
    request_model, respond = _add_predict_route(app, model, predict, limits)
    if model.can_forecast:
        _add_forecast_route(app, model, limits)
    return PredictShortcut(app, request_model, respond)


def _add_info_routes(app: FastAPI, model: ServedModel) -> None:
    @app.get("/health", summary="Liveness and the version being served", responses=error_responses(body=False))
    async def health() -> dict:
        return {"status": "ok", "version": model.ref.version}

    @app.get("/metadata", summary="Registered name, version, run, score and expected inputs",
             responses=error_responses(body=False))
    async def metadata() -> dict:
        return model.metadata


def _annotate(route: Callable, request_model: type) -> None:
    """Give a route its request model as a real annotation (these models exist only at run time)."""
    route.__annotations__ = {"body": request_model, "return": Response}


Respond = Callable[[Any], Awaitable[Response]]


def _add_predict_route(app: FastAPI, model: ServedModel, predict: Predict,
                       limits: Limits) -> tuple[type[BaseModel], Respond]:
    """Add ``POST /predict``; returns its request model and what answers a validated request."""
    request_model, response_model = predict_models(model.columns, max_records=limits.max_records,
                                                   classes=model.classes)

    async def respond(body) -> Response:
        try:
            result = await predict(model, body.records)
        except ModelInputError as exc:
            return _error(422, str(exc))
        payload = {"predictions": result.predictions, "model_version": result.version}
        if result.probabilities is not None:
            payload["probabilities"] = result.probabilities
        return Response(json.dumps(payload), media_type="application/json",
                        headers={BATCH_SIZE_HEADER: str(result.batch_size)})

    async def predict_route(body) -> Response:
        return await respond(body)

    _annotate(predict_route, request_model)
    app.post("/predict", response_model=response_model, summary="Predict rows",
             responses=error_responses(body=True))(predict_route)
    return request_model, respond


class PredictShortcut:
    """ASGI: answers a ``POST /predict`` with a JSON body that fits the request model itself, and hands
    every other request to the FastAPI app.

    FastAPI's middleware, routing and body parsing cost more CPU than a one-row model
    call. The shortcut validates the body with the same request model (pydantic parsing
    the JSON bytes) and answers with the route's own code. A request it does not answer
    (any other path, method or content type, a body that does not validate, an error
    while answering) goes to the app whole, so its answer, an error message included, is
    the app's.
    """

    def __init__(self, app: FastAPI, request_model: type[BaseModel], respond: Respond) -> None:
        self.app = app
        self.request_model = request_model
        self.respond = respond

    async def __call__(self, scope, receive, send) -> None:
        if not (scope["type"] == "http" and scope["path"] == "/predict" and scope["method"] == "POST"
                and _json_body(scope)):
            return await self.app(scope, receive, send)
        message = await receive()
        try:
            if message["type"] != "http.request" or message.get("more_body", False):
                raise ValueError("not the whole body")  # BodyLimit hands it whole; anyone else, the app reads it
            response = await self.respond(self.request_model.model_validate_json(message.get("body", b"")))
        except Exception:  # noqa: BLE001 - the app answers it, as it would without the shortcut
            return await self.app(scope, _replay(message, receive), send)
        await response(scope, receive, send)


def _json_body(scope) -> bool:
    """Whether the request says its body is ``application/json`` (exactly; the app reads any other kind)."""
    for name, value in scope["headers"]:
        if name.lower() == b"content-type":
            return value.lower() == b"application/json"
    return False


def _replay(first: dict, receive):
    """``receive`` that gives ``first`` again, then whatever else the client sends."""
    pending = [first]

    async def replay():
        return pending.pop() if pending else await receive()

    return replay


def _add_forecast_route(app: FastAPI, model: ServedModel, limits: Limits) -> None:
    predictor = model.predictor
    assert predictor is not None and predictor.time_column is not None  # routes exist only for a forecaster
    time_column, target = predictor.time_column, predictor.target
    history_columns = [c for c in model.history_columns() if c.name != time_column]
    max_horizon = min(limits.max_horizon, predictor.max_horizon or limits.max_horizon)
    future_columns = model.future_columns()
    request_model, response_model = forecast_models(history_columns, time_column=time_column, target=target,
                                                    max_horizon=max_horizon, max_records=limits.max_records,
                                                    future=future_columns)
    columns = [Column(time_column, "datetime"), *history_columns]
    ahead = [Column(time_column, "datetime"), *future_columns]

    async def forecast_route(body) -> Response:
        try:
            history = _indexed(body.history, columns, time_column)
            future = _indexed(getattr(body, "future", None), ahead, time_column)
            series = model.forecast(body.horizon, history=history, future=future)
        except (ValueError, TypeError, KeyError) as exc:
            return _error(422, f"cannot forecast from this request: {type(exc).__name__}: {exc}")
        points = [{time_column: _rfc3339(t), target: v} for t, v in zip(series.index, to_json_values(series.values))]
        return Response(json.dumps({"forecast": points, "model_version": model.ref.version}),
                        media_type="application/json")

    _annotate(forecast_route, request_model)
    app.post("/forecast", response_model=response_model, summary="Forecast the next steps",
             responses=error_responses(body=True))(forecast_route)


def _rfc3339(time: pd.Timestamp) -> str:
    """An RFC 3339 date-time, as the schema says: the model's naive times are UTC."""
    return time.isoformat() if time.tzinfo is not None else time.isoformat() + "Z"


def _indexed(records: list | None, columns: list[Column], time_column: str) -> pd.DataFrame | None:
    if not records:
        return None
    frame = records_frame(records, columns).set_index(time_column)
    if frame.index.has_duplicates:
        raise ValueError(f"time {frame.index[frame.index.duplicated()][0]} appears twice")
    return frame.sort_index()


class BodyLimit:
    """ASGI middleware: answers 413 to a body over ``max_bytes``, declared or sent in chunks, and hands
    the app the body whole (the app reads it whole anyway)."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._too_large(scope, receive, send)
        chunks, size, message = [], 0, {"more_body": True}
        while message.get("more_body", False):
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                return await self._too_large(scope, receive, send)
        whole = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay(whole, receive), send)

    async def _too_large(self, scope, receive, send) -> None:
        response = _error(413, f"request body over the limit of {self.max_bytes} bytes")
        await response(scope, receive, send)
