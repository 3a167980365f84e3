"""A small closed-loop HTTP/1.1 load generator: N keep-alive connections, each sending the same request
back to back, for a fixed time. Raw asyncio streams keep the client's own CPU cost low, which matters
when client and servers share two cores.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import numpy as np

__all__ = ["LoadResult", "run_load"]


@dataclass
class LoadResult:
    """Throughput and latency of one load run."""

    concurrency: int
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    batch_sizes: list[int] = field(default_factory=list)  # raymlx's x-raymlx-batch-size header, when sent

    @property
    def requests(self) -> int:
        return len(self.latencies_ms)

    @property
    def mean_batch_size(self) -> float:
        """Requests per model call, averaged over requests (``nan`` when the server sends no such header)."""
        return float(np.mean(self.batch_sizes)) if self.batch_sizes else float("nan")

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")


def _request_bytes(url: str, body: bytes) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    head = (f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    return parts.hostname, parts.port or 80, head.encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool, int | None]:
    """Read one response; returns its status, whether the server keeps the connection, and its batch size."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    batch = headers.get("x-raymlx-batch-size")
    return status, headers.get("connection", "").lower() != "close", int(batch) if batch else None


async def _worker(host: str, port: int, payload: bytes, deadline: float, result: LoadResult) -> None:
    reader = writer = None
    while time.perf_counter() < deadline:
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            start = time.perf_counter()
            writer.write(payload)
            status, keep, batch = await _read_response(reader)
            result.latencies_ms.append((time.perf_counter() - start) * 1000)
            if batch is not None:
                result.batch_sizes.append(batch)
            result.statuses[status] = result.statuses.get(status, 0) + 1
            if not keep:
                writer.close()
                writer = None
        except (OSError, asyncio.IncompleteReadError, ValueError):
            result.errors += 1
            writer = None
            await asyncio.sleep(0.01)
    if writer is not None:
        writer.close()


async def _run(url: str, body: bytes, concurrency: int, seconds: float) -> LoadResult:
    host, port, payload = _request_bytes(url, body)
    result = LoadResult(concurrency, seconds)
    deadline = time.perf_counter() + seconds
    await asyncio.gather(*(_worker(host, port, payload, deadline, result) for _ in range(concurrency)))
    return result


def _arun(coroutine):
    try:  # uvloop halves the client's own CPU cost, leaving more to the server under test
        import uvloop

        return uvloop.run(coroutine)
    except ImportError:
        return asyncio.run(coroutine)


def run_load(url: str, body: bytes, *, concurrency: int, seconds: float, warmup_s: float = 1.0) -> LoadResult:
    """POST ``body`` to ``url`` from ``concurrency`` connections for ``seconds`` (after a warm-up)."""
    if warmup_s:
        _arun(_run(url, body, concurrency, warmup_s))
    return _arun(_run(url, body, concurrency, seconds))


def main() -> None:
    """``python loadgen.py URL BODY_FILE -c 16 -s 40``: run a load and print its summary as JSON."""
    import argparse
    import json
    from pathlib import Path

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("url")
    parser.add_argument("body", type=Path)
    parser.add_argument("-c", "--concurrency", type=int, default=16)
    parser.add_argument("-s", "--seconds", type=float, default=10)
    args = parser.parse_args()
    result = run_load(args.url, args.body.read_bytes(), concurrency=args.concurrency, seconds=args.seconds,
                      warmup_s=0)
    print(json.dumps({"rps": result.rps, "p50_ms": result.percentile(50), "p99_ms": result.percentile(99),
                      "statuses": result.statuses, "errors": result.errors, "requests": result.requests,
                      "mean_batch_size": result.mean_batch_size}))


if __name__ == "__main__":
    main()
