"""The micro-batcher: concurrent requests answered together, each with its own answer or error."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from serving.batching import Arrivals, MicroBatcher
from serving.requests import RequestError


class Doubler:
    """``handle_many`` that doubles ``x``, rejects a negative one and records batch sizes."""

    def __init__(self, crash_on: int | None = None) -> None:
        self.batches: list[int] = []
        self.crash_on = crash_on

    def __call__(self, payloads: Sequence[Mapping[str, Any]]) -> list[Any]:
        self.batches.append(len(payloads))
        if self.crash_on is not None and any(p["x"] == self.crash_on for p in payloads):
            raise RuntimeError("model blew up")
        return [
            RequestError("x", "must not be negative") if p["x"] < 0 else {"y": 2 * p["x"]}
            for p in payloads
        ]


def _gather(batcher: MicroBatcher, xs: list[int]) -> list[Any]:
    async def run() -> list[Any]:
        calls = [batcher({"x": x}) for x in xs]
        return await asyncio.gather(*calls, return_exceptions=True)

    return asyncio.run(run())


def test_concurrent_requests_share_one_batch_and_keep_their_answers() -> None:
    handle = Doubler()
    batcher = MicroBatcher(handle)
    answers = _gather(batcher, list(range(10)))
    assert answers == [{"y": 2 * x} for x in range(10)]
    assert handle.batches == [10]
    assert batcher.stats() == {"batches": 1, "requests": 10, "mean_batch": 10.0}


def test_batches_are_capped_and_a_lone_request_is_served_alone() -> None:
    handle = Doubler()
    batcher = MicroBatcher(handle, max_batch=4)
    assert _gather(batcher, list(range(10))) == [{"y": 2 * x} for x in range(10)]
    assert handle.batches == [4, 4, 2]
    assert _gather(batcher, [21]) == [{"y": 42}]
    assert handle.batches[-1] == 1


def test_a_bad_request_fails_alone() -> None:
    answers = _gather(MicroBatcher(Doubler()), [1, -1, 3])
    assert answers[0] == {"y": 2} and answers[2] == {"y": 6}
    assert isinstance(answers[1], RequestError) and answers[1].field == "x"


def test_a_failing_batch_is_retried_one_by_one_so_only_the_culprit_fails() -> None:
    handle = Doubler(crash_on=7)
    answers = _gather(MicroBatcher(handle), [1, 7, 3])
    assert answers[0] == {"y": 2} and answers[2] == {"y": 6}
    assert isinstance(answers[1], RuntimeError)
    assert handle.batches == [3, 1, 1, 1]


def test_requests_arriving_during_a_batch_wait_for_the_next_one() -> None:
    handle = Doubler()
    batcher = MicroBatcher(handle)

    async def run() -> list[Any]:
        first = asyncio.ensure_future(batcher({"x": 1}))
        await asyncio.sleep(0)  # the first batch is scheduled; these arrive after it starts
        await asyncio.sleep(0)
        rest = [batcher({"x": x}) for x in (2, 3, 4)]
        return await asyncio.gather(first, *rest)

    assert asyncio.run(run()) == [{"y": 2}, {"y": 4}, {"y": 6}, {"y": 8}]
    assert handle.batches == [1, 3]


def test_max_batch_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        MicroBatcher(Doubler(), max_batch=0)


class Slow(Doubler):
    """A batch that takes ``seconds`` (blocking the loop, as a real batch does)."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def __call__(self, payloads: Sequence[Mapping[str, Any]]) -> list[Any]:
        time.sleep(self.seconds)
        return super().__call__(payloads)


def _clients(batcher: MicroBatcher, arrivals: Arrivals | None, delays: list[float]) -> list[Any]:
    """Requests through the door (when there is one) after ``delays`` seconds."""

    async def client(x: int, delay: float) -> Any:
        await asyncio.sleep(delay)
        if arrivals is None:
            return await batcher({"x": x})
        with arrivals.door():
            return await batcher({"x": x})

    async def run() -> list[Any]:
        return await asyncio.gather(*(client(x, d) for x, d in enumerate(delays)))

    return asyncio.run(run())


def test_a_batch_waits_briefly_for_the_clients_that_keep_the_worker_busy() -> None:
    arrivals = Arrivals()
    handle = Slow(0.04)
    batcher = MicroBatcher(handle, arrivals=arrivals, max_wait_s=0.02)
    assert _clients(batcher, arrivals, [0, 0, 0]) == [{"y": 0}, {"y": 2}, {"y": 4}]
    # three clients were inside at once: the next batch waits (at most 40 ms / 8) for the
    # two whose requests are half a millisecond behind the first
    assert _clients(batcher, arrivals, [0, 0.0005, 0.0005]) == [{"y": 0}, {"y": 2}, {"y": 4}]
    assert handle.batches == [3, 3]
    assert arrivals.inside == 0 and arrivals.approaching == 0
    # without the door's count the first request goes alone and the others follow together
    alone = Slow(0.04)
    plain = MicroBatcher(alone, max_wait_s=0.02)
    _clients(plain, None, [0, 0, 0])
    _clients(plain, None, [0, 0.0005, 0.0005])
    assert alone.batches == [3, 1, 2]


def test_a_lone_client_is_never_waited_for() -> None:
    arrivals = Arrivals()
    handle = Slow(0.02)
    batcher = MicroBatcher(handle, arrivals=arrivals, max_wait_s=0.5)
    started = time.perf_counter()
    for _ in range(5):
        assert _clients(batcher, arrivals, [0]) == [{"y": 0}]
    assert handle.batches == [1] * 5
    # no half-second wait: one would make it at least 0.5 + 5 x 0.02 s; the rest is slack for a
    # busy or slow machine's thread scheduling
    assert time.perf_counter() - started < 0.5


def test_the_door_counts_requests_that_never_reach_the_batcher() -> None:
    arrivals = Arrivals()
    with arrivals.door():
        assert (arrivals.inside, arrivals.approaching) == (1, 1)
    assert (arrivals.inside, arrivals.approaching) == (0, 0)  # a 422 before the batcher
    arrivals.arrived()  # outside any door: nothing to count
    assert arrivals.approaching == 0
