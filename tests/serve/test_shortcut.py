"""The ``POST /predict`` shortcut answers every request exactly as the FastAPI app behind it would, and leaves
to the app each request it does not answer itself (in process: the app of a real champion in a real MLflow
store, driven through the same body limit as in a replica)."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from sklearn.linear_model import Ridge

from raymlx.serve.app import BATCH_SIZE_HEADER, BodyLimit, Limits, answer_batch, build_app
from raymlx.serve.model import ServedModel, resolve_model
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
def apps(store, diabetes):
    """The app of a champion that fills gaps and scales, as a replica runs it (body limit, shortcut, FastAPI app); the
    same FastAPI app without the shortcut; and the requests that reached the FastAPI app."""
    predictor = tabular(diabetes, Ridge(), steps=[FillMissing(), StandardScale()])
    register(store, "shortcut", predictor, diabetes.drop(columns=[TARGET]).head(5))
    model = ServedModel.load(resolve_model("models:/shortcut@champion", tracking_uri=store))

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
