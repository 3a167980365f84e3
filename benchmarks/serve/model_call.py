"""CPU time of one one-row request in process, piece by piece: less sensitive to a loaded machine than latency.

    python benchmarks/serve/model_call.py [--repeat 15] [--workload ridge+pipeline]

Registers the serving benchmark's champion (``run.py``'s ``make_champions``) and times, in
this process, with ``time.thread_time`` (the best of ``--repeat`` rounds, microseconds a call):

* ``pyfunc.predict``: MLflow's own call (schema enforcement, then the champion);
* ``served model call``: what a replica calls (``raymlx.serve.app.answer``: the model and JSON values);
* ``ASGI /predict``: the replica's whole app on one request (body limit, parsing, the call, the answer),
  without HTTP, Serve or the relay;
* ``batch of 16, a request``: a replica's batch of 16 one-row requests (one frame, one model call,
  each request's answer), divided by 16.

Run it with ``PYTHONPATH`` set to another checkout to compare two versions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import DATA, WORKLOADS, _row, make_champions  # noqa: E402

from raymlx.serve.app import BodyLimit, Limits, answer, answer_batch, build_app, records_frame  # noqa: E402
from raymlx.serve.model import ServedModel, resolve_model  # noqa: E402
from raymlx.serve.schema import predict_models  # noqa: E402


def asgi_call(app, body: bytes):
    """A coroutine function that sends one ``POST /predict`` through ``app`` and returns its status."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/predict", "raw_path": b"/predict", "query_string": b"", "root_path": "",
             "headers": [(b"host", b"bench"), (b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode())],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2)}

    async def one() -> int:
        sent: list[dict] = []
        pending = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive():
            return pending.pop() if pending else {"type": "http.disconnect"}

        async def send(message):
            sent.append(message)

        await app(dict(scope), receive, send)
        return sent[0]["status"]

    return one


def best_of(call, *, number: int, repeat: int) -> float:
    """Microseconds of CPU a call, the best of ``repeat`` rounds of ``number`` calls."""
    call()
    rounds = []
    for _ in range(repeat):
        start = time.thread_time()
        for _ in range(number):
            call()
        rounds.append((time.thread_time() - start) / number * 1e6)
    return min(rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--workload", choices=list(WORKLOADS), default="ridge+pipeline")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    store = make_champions(Path(tempfile.mkdtemp(prefix="raymlx-model-call-")))
    model = ServedModel.load(resolve_model(f"models:/{WORKLOADS[args.workload]}@champion", tracking_uri=store))
    body = json.dumps({"records": [_row(pd.read_csv(DATA))]}).encode()
    request_model, _ = predict_models(model.columns, max_records=10, classes=None)
    records = request_model.model_validate_json(body).records
    frame = records_frame(records, model.columns)

    async def predict(served, records):
        return answer_batch(served, [records])[0]

    app = BodyLimit(build_app(model, predict, limits=Limits()), 1 << 20)
    one = asgi_call(app, body)
    loop = asyncio.new_event_loop()
    assert loop.run_until_complete(one()) == 200
    results = {
        "pyfunc.predict": best_of(lambda: model.pyfunc.predict(frame), number=100, repeat=args.repeat),
        "served model call": best_of(lambda: answer(model, frame), number=100, repeat=args.repeat),
        "ASGI /predict": best_of(lambda: loop.run_until_complete(one()), number=100, repeat=args.repeat),
        "batch of 16, a request": best_of(lambda: answer_batch(model, [records] * 16), number=20,
                                          repeat=args.repeat) / 16,
    }
    print(json.dumps({k: round(v, 1) for k, v in results.items()}))


if __name__ == "__main__":
    main()
