"""The micro-batcher: concurrent requests answered together, each with its own answer or error."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from serving.batching import MicroBatcher
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
