"""Real HTTP requests to a real Serve application on 127.0.0.1: predictions equal MLflow's own, bad
requests get a 4xx with a message, a new champion rolls in without a failed request, overload sheds 503."""

from __future__ import annotations

import dataclasses
import json
import threading

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression, Ridge

from raymlx.champion import fit_predictor
from raymlx.models import NaiveSeasonal
from raymlx.pipeline import Pipeline
from raymlx.serve._control import _free_port, reload_app, start_app, stop_app
from raymlx.serve.app import BATCH_SIZE_HEADER, Limits
from raymlx.serve.deployment import serve_options
from raymlx.serve.model import resolve_model, to_json_values
from raymlx.spec import AutoscalingSpec, BatchingSpec, ServeSpec
from raymlx.steps import FillMissing, Lags, OneHot, StandardScale
from tests.serve.conftest import (ROW, TARGET, assert_switched_once, clients_sending, daily_series, register,
                                  tabular, wait_until_all_see)

LIMITS = Limits(max_body_bytes=64 * 1024, max_records=100, max_horizon=30)


@pytest.fixture(scope="module")
def served(ray_runtime, store, diabetes):
    """The diabetes champion (version 1) served on a free loopback port; Serve shut down afterwards."""
    predictor = tabular(diabetes, Ridge(alpha=1.0), steps=[StandardScale(columns=["age", "bmi", "bp"])])
    register(store, "diabetes", predictor, diabetes.drop(columns=[TARGET]).head(5))
    ref = resolve_model("models:/diabetes@champion", tracking_uri=store)
    spec = ServeSpec(autoscaling=AutoscalingSpec(min_replicas=1, max_replicas=1),
                     batching=BatchingSpec(max_batch_size=16, batch_wait_timeout_s=0.005))
    options = serve_options(spec, limits=LIMITS, num_cpus=0.5)
    running = start_app(ref, options, host="127.0.0.1", port=_free_port("127.0.0.1"))
    state = {"running": running, "options": options, "ref": ref, "url": running.url}
    yield state
    stop_app(running)


def use(served, uri: str, store: str) -> dict:
    """Make the served application serve ``uri`` (an in-place reload when it differs)."""
    ref = resolve_model(uri, tracking_uri=store)
    if ref != served["ref"]:
        reload_app(ref, served["options"], url=served["url"], timeout_s=60)
        served["ref"] = ref
    return served


def post(url: str, path: str, body) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(url + path, content=content, headers={"content-type": "application/json"}, timeout=30)


def test_predict_equals_mlflow_pyfunc(served, store, diabetes):
    use(served, "models:/diabetes@champion", store)
    rows = diabetes.drop(columns=[TARGET]).sample(37, random_state=1)
    reply = post(served["url"], "/predict", {"records": rows.to_dict("records")})
    assert reply.status_code == 200, reply.text
    mlflow.set_tracking_uri(store)
    expected = mlflow.pyfunc.load_model("models:/diabetes@champion").predict(rows)
    np.testing.assert_allclose(reply.json()["predictions"], expected, rtol=1e-9)


EDGES = [0.0, -0.0, 5e-324, -1e-300, 1e-12, 0.1 + 0.2, 2.0 ** 53 + 1, 1e300, -1e300, None]


def with_edges(rows: pd.DataFrame, columns: list[str], seed: int) -> pd.DataFrame:
    """Rows with about a third of the values in ``columns`` replaced by edge values and gaps (None)."""
    rng = np.random.default_rng(seed)
    rows = rows.reset_index(drop=True).astype({c: float for c in columns})
    for column in columns:
        hit = rng.random(len(rows)) < 0.35
        rows.loc[hit, column] = [np.nan if v is None else v for v in rng.choice(np.array(EDGES, object), hit.sum())]
    return rows


def champion_of(kind: str, diabetes: pd.DataFrame) -> tuple[object, pd.DataFrame, list[str]]:
    """The tabular example's ridge champion on its float columns, or one with an integer and a text column too."""
    if kind == "floats":
        scaled = ["age", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
        return tabular(diabetes, Ridge(alpha=1.0), steps=[FillMissing(), StandardScale(columns=scaled)]), diabetes, \
            [c for c in diabetes.columns if c != TARGET]
    frame = diabetes.assign(age=diabetes["age"].round().astype("int64"), sex=diabetes["sex"].map({1.0: "f", 2.0: "m"}))
    steps = [OneHot(["sex"]), FillMissing(), StandardScale()]
    return tabular(frame, Ridge(alpha=0.5), steps=steps), frame, ["bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]


@pytest.mark.parametrize("kind", ["floats", "mixed"])
def test_served_answers_are_exactly_mlflow_pyfunc_answers(served, store, diabetes, kind):
    """Served predictions equal the pyfunc model's, bit for bit, for many rows with edge values and gaps: in one
    request of many rows, and one row a request (each answered alone). "mixed" has an integer and a text column
    (with categories the model never saw), so its pipeline steps work column by column."""
    predictor, frame, edged = champion_of(kind, diabetes)
    inputs = [c for c in frame.columns if c != TARGET]
    register(store, f"edges-{kind}", predictor, frame[inputs].head(5))
    use(served, f"models:/edges-{kind}@champion", store)
    rows = with_edges(frame[inputs].sample(80, random_state=3), edged, seed=len(kind))
    if kind == "mixed":
        rows.loc[::7, "sex"] = ["", "x", "é", "M"] * 3
    records = rows.astype(object).where(rows.notna(), None).to_dict("records")
    pyfunc = mlflow.pyfunc.load_model(f"models:/edges-{kind}@champion")
    reply = post(served["url"], "/predict", {"records": records})
    assert reply.status_code == 200, reply.text
    assert reply.json()["predictions"] == to_json_values(pyfunc.predict(rows))
    with httpx.Client(timeout=30) as client:
        for i in range(0, len(rows), 4):
            one = client.post(served["url"] + "/predict", json={"records": [records[i]]})
            assert one.json()["predictions"] == to_json_values(pyfunc.predict(rows.iloc[[i]])), records[i]
    huge = rows.iloc[[0]].assign(s5=1.7976931348623157e308)  # scaled beyond the largest float: both refuse it
    with pytest.raises(ValueError, match="infinity"):
        pyfunc.predict(huge)
    reply = post(served["url"], "/predict", {"records": [{**records[0], "s5": 1.7976931348623157e308}]})
    assert reply.status_code == 422 and "infinity" in reply.json()["error"], reply.text


def test_concurrent_requests_are_batched_without_mixing_rows(served, store, diabetes):
    """Requests sent at once share model calls (the replica says how many shared each), each gets its own row."""
    use(served, "models:/diabetes@champion", store)
    rows = diabetes.drop(columns=[TARGET]).head(24)
    expected = mlflow.pyfunc.load_model("models:/diabetes@champion").predict(rows)
    sizes: list[int] = []
    for _ in range(5):  # one burst almost always batches; a loaded machine may serialise a burst now and then
        results, burst_sizes = burst(served["url"], rows)
        np.testing.assert_allclose([results[i] for i in range(len(rows))], expected, rtol=1e-9)
        sizes += burst_sizes
        if max(sizes) > 1:
            break
    assert 1 < max(sizes) <= 16, sizes  # the fixture's max_batch_size


def burst(url: str, rows: pd.DataFrame) -> tuple[dict[int, float], list[int]]:
    """One-row requests for every row, released together; their predictions and batch sizes."""
    results: dict[int, float] = {}
    sizes: list[int] = []
    ready = threading.Barrier(len(rows))

    def one(i: int) -> None:
        with httpx.Client(timeout=30) as client:
            client.get(url + "/health")  # connect first, so that the requests leave together
            ready.wait(timeout=30)
            reply = client.post(url + "/predict", content=json.dumps({"records": [rows.iloc[i].to_dict()]}),
                                headers={"content-type": "application/json"})
        results[i] = reply.json()["predictions"][0]
        sizes.append(int(reply.headers[BATCH_SIZE_HEADER]))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(rows))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results, sizes


def test_health_metadata_and_docs(served, store):
    use(served, "models:/diabetes@champion", store)
    url = served["url"]
    assert httpx.get(url + "/health").json() == {"status": "ok", "version": served["ref"].version}
    meta = httpx.get(url + "/metadata").json()
    assert (meta["registered_model"], meta["version"], meta["metric"], meta["score"]) == (
        "diabetes", served["ref"].version, "rmse", 1.0)
    assert meta["run_id"] == served["ref"].run_id and meta["trained_at"]
    assert [c["name"] for c in meta["inputs"]] == ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
    assert {c["type"] for c in meta["inputs"]} == {"double"}
    schema = httpx.get(url + "/openapi.json").json()["components"]["schemas"]["Record"]
    assert list(schema["properties"]) == [c["name"] for c in meta["inputs"]]
    assert httpx.get(url + "/docs").status_code == 200


BAD_REQUESTS = [
    pytest.param("POST", "/predict", b"", "empty body", id="empty-body"),
    pytest.param("POST", "/predict", b"{", "JSON", id="invalid-json"),
    pytest.param("POST", "/predict", b"[]", "valid dictionary", id="array-not-object"),
    pytest.param("POST", "/predict", {}, "records: Field required", id="no-records"),
    pytest.param("POST", "/predict", {"records": []}, "at least 1", id="zero-records"),
    pytest.param("POST", "/predict", {"records": [{k: v for k, v in ROW.items() if k != "bmi"}]},
                 "records.0.bmi: Field required", id="missing-column"),
    pytest.param("POST", "/predict", {"records": [{**ROW, "height": 1.8}]}, "records.0.height: Extra inputs",
                 id="extra-column"),
    pytest.param("POST", "/predict", {"records": [{**ROW, "bmi": "fat"}]}, "records.0.bmi: Input should be a valid number",
                 id="string-for-number"),
    pytest.param("POST", "/predict", {"records": [{**ROW, "bmi": True}]}, "records.0.bmi", id="bool-for-number"),
    pytest.param("POST", "/predict", {"records": [{**ROW, "bmi": None}]}, "records.0.bmi", id="null-model-cannot-take"),
    pytest.param("POST", "/predict", json.dumps({"records": [{**ROW, "bmi": float("nan")}]}).encode(),
                 "finite number", id="nan"),
    pytest.param("POST", "/predict", json.dumps({"records": [{**ROW, "bmi": float("inf")}]}).encode(),
                 "finite number", id="infinity"),
    pytest.param("POST", "/predict", b'{"records": [{"age": 1e400}]}', "finite", id="overflowing-number"),
    pytest.param("POST", "/predict", {"records": ROW}, "records: Input should be a valid list", id="records-not-list"),
    pytest.param("POST", "/predict", {"records": [1, 2]}, "records.0", id="record-not-object"),
    pytest.param("POST", "/predict", {"records": [ROW], "explain": True}, "explain: Extra inputs", id="extra-key"),
    pytest.param("POST", "/predict", {"records": [ROW] * 101}, "at most 100", id="too-many-records"),
    pytest.param("POST", "/predict", b'{"records": [' + b" " * 70_000 + b"]}", "over the limit", id="body-too-large"),
    pytest.param("POST", "/forecast", {"horizon": 3}, "Not Found", id="forecast-on-tabular-model"),
    pytest.param("GET", "/predict", None, "Method Not Allowed", id="wrong-method"),
    pytest.param("POST", "/nowhere", {}, "Not Found", id="unknown-path"),
]


@pytest.mark.parametrize(("method", "path", "body", "message"), BAD_REQUESTS)
def test_bad_request_gets_4xx_with_a_message(served, store, method, path, body, message):
    use(served, "models:/diabetes@champion", store)
    if method == "GET":
        reply = httpx.get(served["url"] + path)
    else:
        reply = post(served["url"], path, body)
    assert 400 <= reply.status_code < 500, (reply.status_code, reply.text)
    text = reply.json().get("error") or reply.json().get("detail")
    assert message in str(text), text


def test_wrong_content_type_is_a_4xx(served, store):
    use(served, "models:/diabetes@champion", store)
    reply = httpx.post(served["url"] + "/predict", content=b"age=1", headers={"content-type": "text/plain"})
    assert 400 <= reply.status_code < 500, reply.text


def test_classifier_answers_probabilities(served, store, diabetes):
    frame = diabetes.assign(high=(diabetes[TARGET] > 140).astype(int)).drop(columns=[TARGET])
    predictor = tabular(frame, LogisticRegression(max_iter=1000), target="high")
    register(store, "diabetes-high", predictor, frame.drop(columns=["high"]).head(5), task="classification",
             target="high", metric="accuracy", score=0.7)
    use(served, "models:/diabetes-high@champion", store)
    rows = frame.drop(columns=["high"]).head(9)
    reply = post(served["url"], "/predict", {"records": rows.to_dict("records")}).json()
    model = mlflow.pyfunc.load_model("models:/diabetes-high@champion")
    assert reply["predictions"] == model.predict(rows).tolist()
    expected = model.unwrap_python_model().predictor.model.predict_proba(rows)
    np.testing.assert_allclose([[p["0"], p["1"]] for p in reply["probabilities"]], expected, rtol=1e-9)


@pytest.fixture(scope="module")
def forecaster(store) -> str:
    series = daily_series()
    predictor = fit_predictor(series, Pipeline([Lags(["y"], [7])]), NaiveSeasonal(season_length=7), target="y",
                              input_columns=["date"], forecasting=True, time_column="date", horizon=7)
    sample = pd.DataFrame({"date": pd.date_range(series.index[-1], periods=8, freq="D")[1:]})
    register(store, "daily", predictor, sample, task="forecasting", target="y")
    return "models:/daily@champion"


def test_forecast_equals_the_champions_own(served, store, forecaster):
    use(served, forecaster, store)
    reply = post(served["url"], "/forecast", {"horizon": 7})
    assert reply.status_code == 200, reply.text
    expected = mlflow.pyfunc.load_model(forecaster).unwrap_python_model().forecast(7)
    assert [p["y"] for p in reply.json()["forecast"]] == pytest.approx(expected.tolist())
    assert [pd.Timestamp(p["date"]).tz_convert(None) for p in reply.json()["forecast"]] == list(expected.index)


def test_forecast_from_a_callers_history(served, store, forecaster):
    use(served, forecaster, store)
    history = daily_series(60).iloc[-30:] + 5.0
    records = [{"date": t.isoformat(), "y": row.y, "x": row.x} for t, row in history.iterrows()]
    reply = post(served["url"], "/forecast", {"horizon": 7, "history": records})
    assert reply.status_code == 200, reply.text
    expected = mlflow.pyfunc.load_model(forecaster).unwrap_python_model().forecast(7, history=history)
    assert [p["y"] for p in reply.json()["forecast"]] == pytest.approx(expected.tolist())


@pytest.mark.parametrize(("body", "message"), [
    pytest.param({"horizon": 0}, "horizon", id="horizon-zero"),
    pytest.param({"horizon": 8}, "less than or equal to 7", id="horizon-over-validated"),
    pytest.param({"horizon": "7"}, "horizon", id="horizon-string"),
    pytest.param({}, "horizon: Field required", id="horizon-missing"),
    pytest.param({"horizon": 3, "history": [{"date": "2024-01-01", "y": "warm", "x": 1.0}]}, "history.0.y",
                 id="history-wrong-type"),
    pytest.param({"horizon": 3, "history": [{"date": "yesterday", "y": 1.0, "x": 1.0}]}, "history.0.date",
                 id="history-bad-time"),
])
def test_bad_forecast_request_gets_4xx(served, store, forecaster, body, message):
    use(served, forecaster, store)
    reply = post(served["url"], "/forecast", body)
    assert 400 <= reply.status_code < 500, reply.text
    assert message in reply.json()["error"]


@pytest.fixture(scope="module")
def known_ahead(store) -> str:
    """A forecaster of y = 5x + noise where x is a future column (known over the forecast window)."""
    series = daily_series()
    series["x"] = np.random.default_rng(1).uniform(0, 1, len(series))
    series["y"] = 5 * series["x"] + 0.1 * series["y"]
    predictor = fit_predictor(series, Pipeline([Lags(["y"], [7])]), Ridge(alpha=0.01), target="y",
                              input_columns=["date", "x"], forecasting=True, time_column="date", horizon=7,
                              future_columns=["x"])
    times = pd.date_range(series.index[-1], periods=8, freq="D")[1:]
    sample = pd.DataFrame({"date": times, "x": series["x"].iloc[-7:].to_numpy()})
    register(store, "known-ahead", predictor, sample, task="forecasting", target="y")
    return "models:/known-ahead@champion"


def future_records(days: int = 3, offset: float = 0.0) -> list[dict]:
    """The forecast times right after ``daily_series()`` with values of x."""
    times = pd.date_range("2024-04-30", periods=days, freq="D")
    return [{"date": t.isoformat(), "x": 0.2 * i + offset} for i, t in enumerate(times)]


def test_forecast_with_future_values_equals_the_champions_own(served, store, known_ahead):
    use(served, known_ahead, store)
    champion = mlflow.pyfunc.load_model(known_ahead).unwrap_python_model()
    for offset in (0.0, 1.0):
        records = future_records(offset=offset)
        reply = post(served["url"], "/forecast", {"horizon": 3, "future": records})
        assert reply.status_code == 200, reply.text
        future = pd.DataFrame(records).assign(date=lambda f: pd.to_datetime(f["date"]))
        expected = champion.forecast(3, future=future)
        assert [p["y"] for p in reply.json()["forecast"]] == pytest.approx(expected.tolist())
    low, high = (champion.forecast(3, future=pd.DataFrame(future_records(offset=o)).assign(
        date=lambda f: pd.to_datetime(f["date"]))) for o in (0.0, 1.0))
    assert (high - low).between(4, 6).all()


@pytest.mark.parametrize(("body", "message"), [
    pytest.param({"horizon": 3}, "future: Field required", id="future-missing"),
    pytest.param({"horizon": 3, "future": [{"date": "2024-04-30"}]}, "future.0.x", id="future-column-missing"),
    pytest.param({"horizon": 3, "future": [{"date": "2024-04-30", "x": "high"}]}, "future.0.x",
                 id="future-wrong-type"),
    pytest.param({"horizon": 3, "future": future_records(2)}, "future lacks the time(s) 2024-05-02",
                 id="future-time-missing"),
])
def test_bad_future_gets_4xx(served, store, known_ahead, body, message):
    use(served, known_ahead, store)
    reply = post(served["url"], "/forecast", body)
    assert 400 <= reply.status_code < 500, reply.text
    assert message in reply.json()["error"]


def test_without_future_columns_future_is_not_accepted(served, store, forecaster):
    use(served, forecaster, store)
    reply = post(served["url"], "/forecast", {"horizon": 3, "future": future_records()})
    assert reply.status_code == 422 and "future" in reply.json()["error"], reply.text


def test_new_champion_rolls_in_without_a_failed_request(served, store, diabetes):
    """Clients sending all along get 200s only, from the old version and then from the new one."""
    use(served, "models:/diabetes@champion", store)
    url, old = served["url"], served["ref"]
    with clients_sending(url, 4) as clients:
        version = register(store, "diabetes", tabular(diabetes, Ridge(alpha=10.0)),
                           diabetes.drop(columns=[TARGET]).head(5))
        new = resolve_model("models:/diabetes@champion", tracking_uri=store)
        assert new.version == version != old.version
        reload_app(new, served["options"], url=url, timeout_s=60)
        served["ref"] = new
        wait_until_all_see(clients, new.version)
    assert_switched_once(clients, old.version, new.version)
    assert httpx.get(url + "/metadata").json()["version"] == new.version


def test_overload_sheds_503_and_recovers(served, store):
    use(served, "models:/diabetes@champion", store)
    tight = dataclasses.replace(served["options"], max_ongoing_requests=1, max_queued_requests=1)
    reload_app(served["ref"], tight, url=served["url"], timeout_s=90)
    served["options"] = tight
    body = json.dumps({"records": [ROW] * 100}).encode()
    statuses: list[int] = []

    def burst() -> None:
        with httpx.Client(timeout=30) as client:
            for _ in range(5):
                statuses.append(client.post(served["url"] + "/predict", content=body,
                                            headers={"content-type": "application/json"}).status_code)

    threads = [threading.Thread(target=burst) for _ in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert set(statuses) <= {200, 503} and 503 in statuses and 200 in statuses, statuses
    assert post(served["url"], "/predict", {"records": [ROW]}).status_code == 200


def test_replicas_write_no_access_log_line_per_request():
    """Serve's access log costs a record formatted and written per request (5 to 8 % of a replica at 16 clients),
    and a record built and dropped per request while Serve's logger takes INFO lines."""
    from raymlx.serve.deployment import champion_deployment
    from raymlx.serve.model import ModelRef

    ref = ModelRef("models:/m/1", "models:/m/1", "sqlite:///unused.db", "m", "1")
    deployment = champion_deployment(ref, serve_options(ServeSpec()))
    assert deployment.logging_config["enable_access_log"] is False
    assert deployment.logging_config["log_level"] == "WARNING"
