"""Request limits on the served URL, over raw sockets to a real Serve application on 127.0.0.1: a head over the
limits is refused by the relay before a replica reads it (414, 431, 400), a chunked body over the limit gets 413
like a sized one, and requests within the limits (pipelined or not) are answered."""

from __future__ import annotations

import json
import socket
import time
from urllib.parse import urlsplit

import httpx
import pytest
from sklearn.linear_model import Ridge

from raymlx.serve._control import stop_app
from raymlx.serve._requests import HeadLimits
from raymlx.serve.app import Limits
from tests.serve.conftest import TARGET, register, start_served, tabular

ROW = {"age": 59.0, "sex": 2.0, "bmi": 32.1, "bp": 101.0, "s1": 157.0, "s2": 93.2, "s3": 38.0, "s4": 4.0,
       "s5": 4.8598, "s6": 87.0}
BODY = json.dumps({"records": [ROW]}).encode()
HEAD = HeadLimits()
LIMITS = Limits(max_body_bytes=64 * 1024)


@pytest.fixture(scope="module")
def url(ray_runtime, store, diabetes):
    register(store, "limits", tabular(diabetes, Ridge()), diabetes.drop(columns=[TARGET]).head(5))
    running = start_served(store, "models:/limits@champion", limits=LIMITS)
    yield running.url
    stop_app(running)


def request(path: str = "/predict", *, headers: dict | None = None, body: bytes = BODY) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "host: 127.0.0.1", "content-type: application/json",
             f"content-length: {len(body)}", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def exchange(url: str, *payloads: bytes | list[bytes], answers: int = 1, timeout: float = 30) -> list[tuple[int, dict]]:
    """On one connection, send each payload (its chunks one after another, stopping if the server closes)
    and read ``answers`` responses to it: their status and JSON body."""
    parts = urlsplit(url)
    replies = []
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        stream = sock.makefile("rb")
        for payload in payloads:
            for chunk in payload if isinstance(payload, list) else [payload]:
                try:
                    sock.sendall(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    break
            replies += [read_response(stream) for _ in range(answers)]
    return replies


def read_response(stream) -> tuple[int, dict]:
    status = int(stream.readline().split()[1])
    headers = {}
    while (line := stream.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    body = stream.read(int(headers["content-length"]))
    return status, json.loads(body) if body.startswith(b"{") else {"text": body.decode()}


def test_request_within_the_limits_is_answered(url):
    headers = {f"x-field-{i}": "v" * 100 for i in range(HEAD.max_headers - 4)}  # 4 fields of our own
    [(status, body)] = exchange(url, request(headers=headers))
    assert status == 200 and len(body["predictions"]) == 1, body


def test_64_mb_header_is_refused_with_431_before_it_is_read(url):
    start = time.monotonic()
    head = request(body=b"").split(b"\r\n\r\n")[0] + b"\r\nx-big: "
    [(status, body)] = exchange(url, [head] + [b"a" * (1 << 20)] * 64)
    elapsed = time.monotonic() - start
    print(f"a 64 MB header: {status} after {elapsed:.2f} s")
    assert status == 431 and "request head over" in body["error"], body
    assert elapsed < 10  # it was answered 200 after 3.8 s, once a replica had read it all


@pytest.mark.parametrize(("headers", "message"), [
    pytest.param({f"x-field-{i}": "v" for i in range(HEAD.max_headers)}, "more than 100 header fields",
                 id="too-many-fields"),
    pytest.param({f"x-field-{i}": "v" * 1000 for i in range(20)}, "header fields over the limit",
                 id="fields-too-long"),
    pytest.param({"x-one": "v" * (HEAD.max_header_bytes + 1)}, "over the limit", id="one-field-too-long"),
])
def test_header_over_the_limits_gets_431(url, headers, message):
    [(status, body)] = exchange(url, request(headers=headers))
    assert status == 431 and message in body["error"], body


def test_long_request_line_gets_414(url):
    [(status, body)] = exchange(url, request("/predict?q=" + "a" * HEAD.max_url_bytes))
    assert status == 414 and "request target over the limit" in body["error"], body


@pytest.mark.parametrize("payload", [
    pytest.param(b"HELLO\r\n\r\n", id="not-http"),
    pytest.param(b"POST /predict HTTP/1.1\r\ncontent-length: 5\r\ncontent-length: 7\r\n\r\n", id="two-lengths"),
    pytest.param(b"POST /predict HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n", id="bad-chunk-size"),
])
def test_malformed_request_gets_400(url, payload):
    [(status, body)] = exchange(url, payload)
    assert status == 400 and "malformed HTTP request" in body["error"], body


def test_limits_hold_for_every_request_of_a_connection(url):
    big = request(headers={"x-one": "v" * (HEAD.max_header_bytes + 1)})
    (first, _), (second, body) = exchange(url, request(), big)
    assert (first, second) == (200, 431), body


def test_pipelined_requests_are_each_answered(url):
    answers = exchange(url, request() * 3, answers=3)
    assert [status for status, _ in answers] == [200, 200, 200]


def chunks(size: int, piece: int = 4096):
    yield b'{"records": ['
    sent = 0
    while sent < size:
        yield b" " * piece
        sent += piece
    yield json.dumps(ROW).encode() + b"]}"


@pytest.mark.parametrize(("size", "expected"), [
    pytest.param(1024, 200, id="under"), pytest.param(LIMITS.max_body_bytes + 4096, 413, id="over")])
def test_chunked_body_is_limited_like_a_sized_one(url, size, expected):
    reply = httpx.post(url + "/predict", content=chunks(size), headers={"content-type": "application/json"},
                       timeout=30)
    assert reply.request.headers.get("transfer-encoding") == "chunked"
    assert reply.status_code == expected, reply.text
    if expected == 413:
        assert "request body over the limit of 65536 bytes" in reply.json()["error"]


def test_large_sized_body_gets_413_not_a_reset(url):
    body = b'{"records": [' + b" " * (8 << 20) + b"]}"
    reply = httpx.post(url + "/predict", content=body, headers={"content-type": "application/json"}, timeout=30)
    assert reply.status_code == 413, reply.text
