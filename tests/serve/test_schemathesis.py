"""Schemathesis, a property-based API tester, run against the served ``/openapi.json`` with all its checks, for a
champion of each task: no 5xx for any input, every status documented, every response valid against the schema.
Seeded and bounded (a few seconds a champion)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from sklearn.linear_model import LogisticRegression, Ridge

from raymlx.champion import fit_predictor
from raymlx.pipeline import Pipeline
from raymlx.serve._control import reload_app, stop_app
from raymlx.serve.app import Limits
from raymlx.serve.model import resolve_model
from raymlx.steps import Lags
from tests.serve.conftest import TARGET, daily_series, register, start_served, tabular, fixed_options

SEED, EXAMPLES = 20261127, 60
LIMITS = Limits(max_body_bytes=256 * 1024, max_records=50, max_horizon=30)


@pytest.fixture(scope="module")
def champions(ray_runtime, store, diabetes) -> dict[str, str]:
    """A registered champion of each task."""
    register(store, "st-regression", tabular(diabetes, Ridge()), diabetes.drop(columns=[TARGET]).head(5))
    frame = diabetes.assign(high=(diabetes[TARGET] > 140).astype(int)).drop(columns=[TARGET])
    register(store, "st-classification", tabular(frame, LogisticRegression(max_iter=1000), target="high"),
             frame.drop(columns=["high"]).head(5), task="classification", target="high", metric="accuracy")
    series = daily_series()
    forecaster = fit_predictor(series, Pipeline([Lags(["y"], [7])]), Ridge(), target="y", input_columns=["date", "x"],
                               forecasting=True, time_column="date", horizon=7, future_columns=["x"])
    sample = series.reset_index()[["date", "x"]].tail(7)
    register(store, "st-forecasting", forecaster, sample, task="forecasting", target="y")
    return {task: f"models:/st-{task}@champion" for task in ("regression", "classification", "forecasting")}


@pytest.fixture(scope="module")
def served(champions, store):
    running = start_served(store, champions["regression"], limits=LIMITS)
    yield running
    stop_app(running)


# A forecast needs future rows at exactly the forecast window's times, and times pandas can hold (years 1677 to
# 2262): rules a JSON Schema cannot state, so a schema-valid forecasting request may get the documented 422.
FORECAST_CONFIG = """
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "422", "429"]
"""


def schemathesis(url: str, cwd: Path, *, config: str = "") -> subprocess.CompletedProcess:
    command = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or "schemathesis"
    (cwd / "schemathesis.toml").write_text(config)
    return subprocess.run(
        [command, "--config-file", str(cwd / "schemathesis.toml"), "run", f"{url}/openapi.json", "--checks", "all",
         "--seed", str(SEED),
         "--max-examples", str(EXAMPLES), "--workers", "1", "--request-timeout", "30", "--no-color"],
        cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("task", ["regression", "classification", "forecasting"])
def test_schemathesis_finds_no_failure(served, champions, store, task, tmp_path):
    ref = resolve_model(champions[task], tracking_uri=store)
    reload_app(ref, fixed_options(limits=LIMITS), url=served.url, timeout_s=90)
    result = schemathesis(served.url, tmp_path, config=FORECAST_CONFIG if task == "forecasting" else "")
    summary = result.stdout[result.stdout.find("SUMMARY"):]
    print(summary)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


def test_times_are_rfc3339_strings_read_as_utc(served, champions, store):
    """What schemathesis found on main: ``{"date": 0}`` was a 500, and forecast times had no offset."""
    reload_app(resolve_model(champions["forecasting"], tracking_uri=store), fixed_options(limits=LIMITS),
               url=served.url, timeout_s=90)
    reply = httpx.post(served.url + "/predict", json={"records": [{"date": 0, "x": 0.5}]}, timeout=30)
    assert reply.status_code == 422 and "RFC 3339" in reply.json()["error"], reply.text
    same = [httpx.post(served.url + "/predict", json={"records": [{"date": when, "x": 0.5}]}, timeout=30)
            for when in ("2024-05-01T00:00:00", "2024-05-01T00:00:00Z", "2024-05-01T02:00:00+02:00")]
    assert [r.status_code for r in same] == [200] * 3 and len({r.text for r in same}) == 1, [r.text for r in same]
    future = [{"date": "2024-04-30T02:00:00+02:00", "x": 0.5}]  # the day after the series' last, in UTC
    points = httpx.post(served.url + "/forecast", json={"horizon": 1, "future": future}, timeout=30).json()
    assert points["forecast"][0]["date"] == "2024-04-30T00:00:00Z", points
