"""When a replica's batch stops waiting: at once for a lone client, for every request the replica has, for clients
answered a moment ago while their requests keep coming, never past the wait (real asyncio, in process)."""

from __future__ import annotations

import asyncio
import time

import pytest

from raymlx.serve._batching import Batcher, Returning


class Replica:
    """What a replica tells the batcher (requests it holds, clients answered a moment ago) and the calls it made."""

    def __init__(self, *, max_size: int = 8, wait_s: float = 2.0, gap_s: float = 0.05) -> None:
        self.in_flight = 0
        self.returning = 0
        self.calls: list[list] = []
        self.batcher = Batcher(self.call, max_size=max_size, wait_s=wait_s, gap_s=gap_s,
                               in_flight=lambda: self.in_flight, returning=lambda: self.returning)

    def call(self, items: list) -> list:
        self.calls.append(list(items))
        return [ValueError(f"bad {item}") if item == "bad" else f"answer {item}" for item in items]

    async def request(self, item, *, after_s: float = 0.0):
        """A request that reaches the batch ``after_s`` after it entered the replica."""
        self.in_flight += 1
        try:
            await asyncio.sleep(after_s)
            return await self.batcher.submit(item)
        finally:
            self.in_flight -= 1
            self.batcher.check()


def timed(coroutine) -> tuple[object, float]:
    start = time.monotonic()
    result = asyncio.run(coroutine)
    return result, time.monotonic() - start


def test_a_lone_request_is_answered_at_once():
    replica = Replica(wait_s=5.0)
    result, took = timed(replica.request(1))
    assert result == "answer 1" and replica.calls == [[1]]
    assert took < 1.0


def test_requests_in_the_replica_share_one_call_and_each_gets_its_own_answer():
    replica = Replica(wait_s=5.0)

    async def main():
        return await asyncio.gather(*(replica.request(i, after_s=0.01 * i) for i in range(5)))

    results, took = timed(main())
    assert results == [f"answer {i}" for i in range(5)]
    assert replica.calls == [[0, 1, 2, 3, 4]]
    assert took < 2.0  # the last one arrived: no wait for the timeout


def test_a_full_batch_goes_at_once_and_the_rest_waits_for_the_next():
    replica = Replica(max_size=3, wait_s=5.0)

    async def main():
        return await asyncio.gather(*(replica.request(i) for i in range(7)))

    results, took = timed(main())
    assert results == [f"answer {i}" for i in range(7)]
    assert replica.calls == [[0, 1, 2], [3, 4, 5], [6]] and took < 2.0


def test_clients_answered_a_moment_ago_are_waited_for_while_requests_keep_coming():
    replica = Replica(wait_s=5.0, gap_s=0.3)
    replica.returning = 3

    async def main():
        async def comes_back(item, after_s):
            await asyncio.sleep(after_s)
            replica.returning -= 1
            return await replica.request(item)

        return await asyncio.gather(replica.request(0), comes_back(1, 0.1), comes_back(2, 0.2), comes_back(3, 0.3))

    results, took = timed(main())
    assert results == [f"answer {i}" for i in range(4)]
    assert replica.calls == [[0, 1, 2, 3]], "each came within the gap after the one before"
    assert took < 2.0


def test_a_client_that_does_not_come_back_costs_one_gap_not_the_whole_wait():
    replica = Replica(wait_s=5.0, gap_s=0.2)
    replica.returning = 1
    result, took = timed(replica.request(1))
    assert result == "answer 1" and replica.calls == [[1]]
    assert 0.15 <= took < 2.0


def test_a_request_still_in_the_replica_is_waited_for_no_longer_than_the_wait():
    replica = Replica(wait_s=0.3, gap_s=0.3)
    replica.in_flight = 1  # a request the replica holds that never reaches the batch
    result, took = timed(replica.request(1))
    assert result == "answer 1" and 0.25 <= took < 2.0


def test_a_request_leaving_without_reaching_the_batch_ends_the_wait():
    replica = Replica(wait_s=5.0)

    async def refused():  # e.g. answered 4xx by the app before it reaches the batch
        replica.in_flight += 1
        await asyncio.sleep(0.1)
        replica.in_flight -= 1
        replica.batcher.check()

    async def main():
        return (await asyncio.gather(replica.request(1), refused()))[0]

    result, took = timed(main())
    assert result == "answer 1" and took < 2.0


def test_an_error_answers_only_its_own_request_and_a_failed_call_every_request():
    replica = Replica()

    async def main():
        return await asyncio.gather(replica.request("ok"), replica.request("bad"), return_exceptions=True)

    ok, bad = asyncio.run(main())
    assert ok == "answer ok" and isinstance(bad, ValueError) and str(bad) == "bad bad"

    def broken(items):
        raise RuntimeError("model crashed")

    replica.batcher.call = broken
    both = asyncio.run(main())
    assert [str(e) for e in both] == ["model crashed", "model crashed"]


def test_a_request_whose_client_went_away_is_left_out_of_the_call():
    replica = Replica(wait_s=5.0)

    async def main():
        gone = asyncio.ensure_future(replica.request("gone"))
        replica.in_flight += 1  # a second request is on its way: the first waits
        await asyncio.sleep(0.05)
        gone.cancel()
        replica.in_flight -= 1
        return await replica.request("here")

    assert asyncio.run(main()) == "answer here"
    assert replica.calls == [["here"]]


def test_returning_counts_connections_answered_within_the_window_until_they_send_again():
    returning = Returning(0.2)
    returning.answered(("127.0.0.1", 1))
    returning.answered(("127.0.0.1", 2))
    assert len(returning) == 2
    returning.arrived(("127.0.0.1", 1))
    assert len(returning) == 1
    time.sleep(0.1)
    returning.answered(("127.0.0.1", 3))
    time.sleep(0.15)
    assert len(returning) == 1, "the connection answered 0.25 s ago is forgotten, the one 0.15 s ago is not"


@pytest.mark.parametrize("gap_s", [0.0, 0.01])
def test_the_gap_never_exceeds_the_wait(gap_s):
    batcher = Batcher(lambda items: items, max_size=4, wait_s=gap_s, gap_s=0.5, in_flight=lambda: 1,
                      returning=lambda: 0)
    assert batcher.gap_s == gap_s


def test_the_replica_app_tells_which_connections_a_shared_call_answered_and_when_a_request_leaves():
    from raymlx.serve.deployment import _SHARED, _SwappableApp

    app = _SwappableApp(1 << 10, returning_s=5.0)
    seen, left = [], []
    app.on_leave = lambda: left.append(app.in_flight)

    async def model_app(scope, receive, send):
        seen.append((app.in_flight, len(app.returning)))
        shared = _SHARED.get()
        shared[0] = scope["client"][1] != 5003  # what ChampionServer._predict sets: answered with others or alone
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    app.current = model_app

    async def request(port: int) -> None:
        scope = {"type": "http", "method": "POST", "path": "/predict", "headers": [], "client": ("127.0.0.1", port)}
        messages = [{"type": "http.request", "body": b"{}", "more_body": False}]

        async def receive():
            return messages.pop()

        async def send(message):
            pass

        await app(scope, receive, send)

    async def main():
        await request(5001)
        await request(5002)
        await request(5001)  # the first connection sends again: no longer one that may come back
        await request(5003)  # answered alone: not one to wait for

    asyncio.run(main())
    assert seen == [(1, 0), (1, 1), (1, 1), (1, 2)]
    assert left == [0, 0, 0, 0] and len(app.returning) == 2
