"""The ``POST /predict`` shortcut answers every request exactly as the FastAPI app behind it would, and leaves
to the app each request it does not answer itself (in process: the app of a real champion in a real MLflow
store, driven through the same body limit as in a replica)."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from sklearn.linear_model import Ridge

from raymlx.serve.app import BATCH_SIZE_HEADER, BodyLimit, Limits, ModelInputError, answer_batch, build_app
from raymlx.serve.model import ServedModel, resolve_model
from raymlx.serve.schema import predict_models
from raymlx.steps import FillMissing, StandardScale
from tests.serve.conftest import TARGET, register, tabular

ROW = {"age": 59.0, "sex": 2.0, "bmi": 32.1, "bp": 101.0, "s1": 157.0, "s2": 93.2, "s3": 38.0, "s4": 4.0,
       "s5": 4.8598, "s6": 87.0}
JSON = {"content-type": "application/json"}

SHORTCUT = [  # answered by the shortcut itself
    pytest.param({"records": [ROW]}, 200, id="one-row"),
    pytest.param({"records": [ROW, {**ROW, "bmi": None, "age": 0}, {**ROW, "s5": 5e-324, "bp": -0.0}]}, 200,
                 id="rows-with-gaps-and-edges"),
    pytest.param({"records": [{**ROW, "age": 9007199254740993, "s6": 1e300}]}, 200, id="big-numbers"),
    pytest.param({"records": [{**ROW, "s5": 1.7976931348623157e308}]}, 422, id="model-refuses"),
]
APP = [  # handed to the app
    pytest.param(b"", JSON, id="empty-body"),
    pytest.param(b"{", JSON, id="invalid-json"),
    pytest.param(b"[]", JSON, id="array"),
    pytest.param(json.dumps({"records": [{**ROW, "height": 1.8}]}).encode(), JSON, id="extra-column"),
    pytest.param(json.dumps({"records": [{**ROW, "bmi": "fat"}]}).encode(), JSON, id="string-for-number"),
    pytest.param(json.dumps({"records": [{**ROW, "bmi": float("nan")}]}).encode(), JSON, id="nan-literal"),
    pytest.param(json.dumps({"records": []}).encode(), JSON, id="no-records"),
    pytest.param(b"\xef\xbb\xbf" + json.dumps({"records": [ROW]}).encode(), JSON, id="byte-order-mark"),
    pytest.param(json.dumps({"records": [ROW]}).encode(), {"content-type": "application/json; charset=utf-8"},
                 id="content-type-with-charset"),
    pytest.param(json.dumps({"records": [ROW]}).encode(), {"content-type": "text/plain"}, id="text-plain"),
    pytest.param(json.dumps({"records": [ROW]}).encode(), {}, id="no-content-type"),
]


@pytest.fixture(scope="module")
def model(store, diabetes) -> ServedModel:
    """A champion that fills gaps and scales, loaded as a replica loads it."""
    predictor = tabular(diabetes, Ridge(), steps=[FillMissing(), StandardScale()])
    register(store, "shortcut", predictor, diabetes.drop(columns=[TARGET]).head(5))
    return ServedModel.load(resolve_model("models:/shortcut@champion", tracking_uri=store))


@pytest.fixture(scope="module")
def apps(model):
    """The app of a champion that fills gaps and scales, as a replica runs it (body limit, shortcut, FastAPI app); the
    same FastAPI app without the shortcut; and the requests that reached the FastAPI app."""

    async def predict(served, records):
        result = answer_batch(served, [records])[0]
        if isinstance(result, Exception):
            raise result
        return result

    shortcut = build_app(model, predict, limits=Limits(max_records=10))
    fastapi_app, reached = shortcut.app, []

    async def counted(scope, receive, send):
        reached.append(scope["path"])
        await fastapi_app(scope, receive, send)

    shortcut.app = counted
    return BodyLimit(shortcut, 1 << 16), BodyLimit(fastapi_app, 1 << 16), reached


def both(apps, method: str, path: str, body: bytes = b"", headers: dict | None = None) -> list[httpx.Response]:
    async def send(app) -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://served") as client:
            return await client.request(method, path, content=body, headers=headers or {})

    return [asyncio.run(send(app)) for app in apps[:2]]


def same(replies: list[httpx.Response]) -> None:
    shortcut, app = replies
    assert (shortcut.status_code, shortcut.content) == (app.status_code, app.content)
    for header in ("content-type", "content-length", BATCH_SIZE_HEADER):
        assert shortcut.headers.get(header) == app.headers.get(header), header


@pytest.mark.parametrize(("body", "status"), SHORTCUT)
def test_the_shortcut_answers_valid_requests_as_the_app_does(apps, body, status):
    apps[2].clear()
    replies = both(apps, "POST", "/predict", json.dumps(body).encode(), JSON)
    assert apps[2] == [], "the shortcut handed a request it should answer to the app"
    same(replies)
    assert replies[0].status_code == status, replies[0].text


@pytest.mark.parametrize(("body", "headers"), APP)
def test_other_requests_get_the_apps_own_answer(apps, body, headers):
    apps[2].clear()
    replies = both(apps, "POST", "/predict", body, headers)
    assert apps[2] == ["/predict"]
    same(replies)


@pytest.mark.parametrize(("method", "path"), [("GET", "/predict"), ("GET", "/health"), ("POST", "/forecast"),
                                              ("GET", "/openapi.json")])
def test_other_routes_and_methods_go_to_the_app(apps, method, path):
    apps[2].clear()
    replies = both(apps, method, path, json.dumps({"records": [ROW]}).encode(), JSON)
    assert apps[2] == [path]
    same(replies)


def test_a_batch_is_one_frame_and_one_model_call_and_a_bad_request_fails_alone(model, monkeypatch):
    """Several requests' records make one frame for one model call, each request gets its own rows' answers, the
    same as alone; when one request's rows cannot be predicted, each is answered alone and only that one fails."""
    request_model, _ = predict_models(model.columns, max_records=10, classes=None)

    def records(*rows):
        return request_model.model_validate_json(json.dumps({"records": list(rows)})).records

    requests = [records(ROW), records({**ROW, "bmi": None}, {**ROW, "age": 0}), records({**ROW, "s5": 5e-324})]
    alone = [answer_batch(model, [r])[0] for r in requests]
    calls = []
    predict = model.predict
    monkeypatch.setattr(model, "predict", lambda frame: calls.append(len(frame)) or predict(frame))
    together = answer_batch(model, requests)
    assert calls == [4], "one model call on the four rows of three requests"
    assert [a.predictions for a in together] == [a.predictions for a in alone]
    assert [a.batch_size for a in together] == [3, 3, 3] and [a.batch_size for a in alone] == [1, 1, 1]
    calls.clear()
    refused = records({**ROW, "s5": 1.7976931348623157e308})  # scaled beyond the largest float: the model refuses
    answers = answer_batch(model, [requests[0], refused, requests[2]])
    assert calls == [3, 1, 1, 1], "the batch, then each request alone"
    assert answers[0].predictions == alone[0].predictions and answers[2].predictions == alone[2].predictions
    assert isinstance(answers[1], ModelInputError) and "infinity" in str(answers[1])
