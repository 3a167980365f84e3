"""A real Serve application on 127.0.0.1 in the session's Ray runtime, and champions registered in a real MLflow store.

Direct ingress is switched on here, at import, so that the session's Ray runtime
(started later by the ``ray_runtime`` fixture) runs Serve the way ``raymlx serve`` does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import threading
import time
from typing import Iterator

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest

from raymlx.serve._control import SERVE_ENV

for _key, _value in SERVE_ENV.items():
    os.environ.setdefault(_key, _value)

from raymlx.champion import fit_predictor  # noqa: E402
from raymlx.pipeline import Pipeline  # noqa: E402
from raymlx.champion import log_champion  # noqa: E402
from tests.conftest import DIABETES  # noqa: E402

TARGET = "progression"
ROW = {"age": 59.0, "sex": 2.0, "bmi": 32.1, "bp": 101.0, "s1": 157.0, "s2": 93.2, "s3": 38.0, "s4": 4.0,
       "s5": 4.8598, "s6": 87.0}


@pytest.fixture(scope="session")
def diabetes() -> pd.DataFrame:
    return pd.read_csv(DIABETES)


@pytest.fixture(scope="session")
def store(tmp_path_factory) -> str:
    """A sqlite MLflow store with its artifacts beside it."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.create_experiment("serve", artifact_location=(root / "artifacts").as_uri())
    return uri


def register(store: str, name: str, predictor, sample: pd.DataFrame, **metadata) -> str:
    """Log ``predictor`` as a raymlx champion under ``name``; returns the new version."""
    mlflow.set_tracking_uri(store)
    mlflow.set_experiment("serve")
    with mlflow.start_run() as run:
        pass
    info = {"model": "test", "metric": "rmse", "score": 1.0, "task": "regression", "target": TARGET, "params": {},
            **metadata}
    _, version = log_champion(predictor, run_id=run.info.run_id, experiment_id=run.info.experiment_id,
                              registered_model=name, code_paths=[],
                              metadata=info, sample=sample)
    return version


def tabular(frame: pd.DataFrame, model, *, target: str = TARGET, steps: list | None = None):
    inputs = [c for c in frame.columns if c != target]
    return fit_predictor(frame, Pipeline(steps or []), model, target=target, input_columns=inputs,
                         forecasting=False, time_column=None)


def daily_series(days: int = 120) -> pd.DataFrame:
    index = pd.date_range("2024-01-01", periods=days, freq="D", name="date")
    t = np.arange(days)
    noise = np.random.default_rng(0).normal(0, 0.5, days)
    return pd.DataFrame({"y": 10 + 3 * np.sin(2 * np.pi * t / 7) + noise, "x": t * 0.1}, index=index)



def fixed_options(*, replicas: int = 1, limits=None, num_cpus: float = 0.5):
    """Serve options with a fixed number of replicas and small batches."""
    from raymlx.serve.deployment import serve_options
    from raymlx.spec import AutoscalingSpec, BatchingSpec, ServeSpec

    spec = ServeSpec(autoscaling=AutoscalingSpec(min_replicas=replicas, max_replicas=replicas),
                     batching=BatchingSpec(max_batch_size=16, batch_wait_timeout_s=0.005))
    return serve_options(spec, limits=limits, num_cpus=num_cpus)


def start_served(store: str, uri: str, *, replicas: int = 1, limits=None):
    """Serve ``uri`` on a free loopback port with ``replicas`` replicas; returns the running application."""
    from raymlx.serve._control import _free_port, start_app
    from raymlx.serve.model import resolve_model

    ref = resolve_model(uri, tracking_uri=store)
    options = fixed_options(replicas=replicas, limits=limits)
    return start_app(ref, options, host="127.0.0.1", port=_free_port("127.0.0.1"))


@dataclasses.dataclass
class Versions:
    """What one client saw: the model version of each answer, and every failed request."""

    seen: list[str] = dataclasses.field(default_factory=list)
    failures: list[str] = dataclasses.field(default_factory=list)


def client_loop(url: str, versions: Versions, stop: threading.Event, *, limit_s: float = 180,
                pause_s: float = 0.0) -> None:
    """Predict one row after another until ``stop`` (or ``limit_s``); any non-200 or exception is a failure."""
    body = json.dumps({"records": [ROW]}).encode()
    deadline = time.monotonic() + limit_s
    with httpx.Client(timeout=30) as client:
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                reply = client.post(url + "/predict", content=body, headers={"content-type": "application/json"})
                if reply.status_code != 200:
                    versions.failures.append(f"{reply.status_code}: {reply.text[:200]}")
                else:
                    versions.seen.append(reply.json()["model_version"])
            except Exception as exc:  # a reset connection, a reply that is not JSON: a failed request too
                versions.failures.append(f"{type(exc).__name__}: {exc}")
            stop.wait(pause_s)


@contextlib.contextmanager
def clients_sending(url: str, count: int, **loop_options) -> Iterator[list[Versions]]:
    """``count`` clients predicting in a loop while the block runs; each client's versions and failures."""
    clients = [Versions() for _ in range(count)]
    stop = threading.Event()
    loops = [threading.Thread(target=client_loop, args=(url, versions, stop), kwargs=loop_options)
             for versions in clients]
    for loop in loops:
        loop.start()
    try:
        yield clients
    finally:
        stop.set()
        for loop in loops:
            loop.join(timeout=60)
    assert not any(loop.is_alive() for loop in loops)


def wait_until_all_see(clients: list[Versions], version: str, *, timeout_s: float = 30) -> None:
    """Wait until every client has had an answer from ``version``, and a little more."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not all(version in c.seen for c in clients):
        time.sleep(0.1)
    time.sleep(0.5)


def assert_switched_once(clients: list[Versions], old: str, new: str) -> None:
    """No client saw a failed request; each saw ``old``, then ``new``, and never went back."""
    failures = [f for c in clients for f in c.failures]
    assert not failures, (len(failures), failures[:5])
    for c in clients:
        assert c.seen[0] == old and c.seen[-1] == new, c.seen[:3] + c.seen[-3:]
        switch = c.seen.index(new)
        assert set(c.seen[:switch]) == {old} and set(c.seen[switch:]) == {new}
