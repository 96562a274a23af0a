"""Adaptive micro-batching of concurrent requests inside one worker process.

A handler answers a batch with one feature read and one model call per model version
(:meth:`serving.handler.Handler.serve_many`): measured in-process on the feed (100K items, 500
candidates), 8.5 ms a request alone and 2.3 ms a request in batches of 8; fraud 1.1 ms and 0.5 ms.
The batcher turns concurrency into such batches: requests that arrive while a batch runs go
together in the next one, and a new batch waits, briefly, only for requests it can expect --
those already inside the server (:class:`ArrivalGate` counts them) and the next requests of the
clients that recently kept this worker busy, which are on the wire as their answers arrive. The
wait is bounded by an eighth of the last batch's time, and a lone client is never waited for.
Without it, eight clients of the feed settled into batches of two (189 requests/s, p50 42 ms,
one worker); with it, batches of eight (368 requests/s, p50 21 ms).

Batches run on the event loop itself, which stops reading the sockets meanwhile: the kernel
queues what arrives. Running them on a worker thread instead, so the loop kept parsing, was
slower (feed behind BentoML, 2 workers, 8 clients: 186 against 518 requests/s): most of a batch
is Python holding the GIL, and every hand-over between the two threads waited out the
interpreter's switch interval.

It is plain ``asyncio`` (no BentoML), so the BentoML services and the bare-FastAPI baseline
share it. BentoML's own ``batchable`` APIs would need a second service and an IPC hop per
batch, and a list-shaped public API; this keeps ``POST /score {transaction}`` as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping, Sequence
from typing import Any

log = logging.getLogger(__name__)

Payload = Mapping[str, Any]
BatchFunction = Callable[[Sequence[Payload]], list[Any]]
Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable, Callable], Awaitable[None]]

_WIRE_S = 0.0001  # one poll of the sockets while waiting for requests on the wire

# the current request's "has reached the batcher" flag, set by ArrivalGate for its own task
_TICKET: contextvars.ContextVar[list[bool]] = contextvars.ContextVar("playbook_batch_ticket")


class Arrivals:
    """How many requests have come in through the server's door but not yet reached the
    batcher: those still being read, parsed and validated on the event loop.

    Waiting one loop pass was not enough for them: BentoML takes several passes to bring a
    request from its socket to the API method, so batches formed before the rest arrived, and
    eight clients settled into batches of two (feed, one worker: 189 requests/s, p50 42 ms).
    """

    def __init__(self, horizon_s: float = 1.0) -> None:
        self.approaching = 0
        self.inside = 0  # from the door until the answer has gone out
        self.horizon_s = horizon_s
        self._peak = 0
        self._peak_at = 0.0

    @property
    def recent_peak(self) -> int:
        """The most requests inside at once within about ``horizon_s``: how many clients are
        keeping this worker busy, so how many a batch can expect to gather."""
        return max(self._peak, self.inside)

    @contextlib.contextmanager
    def door(self) -> Iterator[None]:
        """Around one request: counted until it reaches the batcher or ends (a 422 never does)."""
        ticket = [False]
        token = _TICKET.set(ticket)
        self.approaching += 1
        self.inside += 1
        now = time.monotonic()
        if self.inside >= self._peak or now - self._peak_at > self.horizon_s:
            self._peak, self._peak_at = self.inside, now
        try:
            yield
        finally:
            self.inside -= 1
            if not ticket[0]:
                self.approaching -= 1
            _TICKET.reset(token)

    def arrived(self) -> None:
        """The current request reached the batcher (no-op outside a door)."""
        ticket = _TICKET.get(None)
        if ticket is not None and not ticket[0]:
            ticket[0] = True
            self.approaching -= 1


class ArrivalGate:
    """ASGI middleware counting requests to the batched ``paths`` in :class:`Arrivals`; put it
    outermost, so a request is counted from the moment the server hands it over."""

    def __init__(self, app: ASGIApp, arrivals: Arrivals, paths: tuple[str, ...] = ()) -> None:
        self.app = app
        self.arrivals = arrivals
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        with self.arrivals.door():
            await self.app(scope, receive, send)


class MicroBatcher:
    """``await batcher(payload)``: the answer of ``handle_many`` for that payload.

    ``handle_many`` takes payloads and returns one entry each; an entry that is an exception
    is raised to that request's caller alone. If ``handle_many`` itself raises, the batch is
    retried one payload at a time, so an unexpected failure reaches only the request that
    causes it. Create it inside the event loop that will use it, or before any loop runs.
    """

    def __init__(
        self,
        handle_many: BatchFunction,
        max_batch: int = 32,
        arrivals: Arrivals | None = None,
        max_wait_s: float = 0.002,
    ) -> None:
        """``arrivals`` (with an :class:`ArrivalGate` in front of the app): a batch may wait, at
        most ``max_wait_s`` and an eighth of the last batch's time, for requests it can expect
        (see :meth:`_gather`); without it, a batch is whatever has reached the batcher."""
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.handle_many = handle_many
        self.max_batch = max_batch
        self.arrivals = arrivals
        self.max_wait_s = max_wait_s
        self._last_batch_s = 0.0
        self._waiting: list[tuple[Payload, asyncio.Future]] = []
        self._running = False
        self.batches = 0
        self.requests = 0

    async def __call__(self, payload: Payload) -> Any:
        if self.arrivals is not None:
            self.arrivals.arrived()
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((payload, future))
        if not self._running:
            self._running = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    def stats(self) -> dict[str, float]:
        """Batches and requests so far, and their ratio (health and benchmark reports)."""
        mean = self.requests / self.batches if self.batches else 0.0
        return {"batches": self.batches, "requests": self.requests, "mean_batch": mean}

    async def _drain(self) -> None:
        try:
            while True:
                # one loop pass first: requests read alongside this one, or while the last batch
                # ran, reach the queue and join; answers already set go out
                await asyncio.sleep(0)
                await self._gather()
                if not self._waiting:
                    break
                batch = self._waiting[: self.max_batch]
                del self._waiting[: self.max_batch]
                payloads = [payload for payload, _ in batch]
                started = time.perf_counter()
                try:
                    answers = self._answer(payloads)
                    if len(answers) != len(batch):
                        raise RuntimeError(f"{len(answers)} answers to {len(batch)} requests")
                except Exception as error:  # never leave a caller waiting
                    answers = [error] * len(batch)
                self._last_batch_s = time.perf_counter() - started
                self.batches += 1
                self.requests += len(batch)
                for (_, future), answer in zip(batch, answers, strict=True):
                    if future.done():  # the caller went away (client disconnect, timeout)
                        continue
                    if isinstance(answer, BaseException):
                        future.set_exception(answer)
                    else:
                        future.set_result(answer)
        finally:
            self._running = False

    async def _gather(self) -> None:
        """Wait, briefly, for the requests this batch can expect: while some are inside the
        server but not here yet, and while fewer are here than the clients recently keeping
        this worker busy (their next requests are on the wire as their answers arrive).

        The wait is at most an eighth of the last batch's time and ``max_wait_s``: small next
        to what a fuller batch saves, and none for a lone client, which is never waited for.
        """
        if self.arrivals is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(self.max_wait_s, self._last_batch_s / 8)
        while len(self._waiting) < self.max_batch and loop.time() < deadline:
            if self.arrivals.inside > len(self._waiting):
                await asyncio.sleep(0)  # inside already: a few loop passes bring them
            elif self.arrivals.recent_peak > len(self._waiting):
                await asyncio.sleep(_WIRE_S)  # on the wire: let the loop poll the sockets
            else:
                return

    def _answer(self, payloads: list[Payload]) -> list[Any]:
        try:
            return self.handle_many(payloads)
        except Exception as error:
            if len(payloads) == 1:
                return [error]
            log.exception("a batch of %d failed; answering one at a time", len(payloads))
            return [self._answer([payload])[0] for payload in payloads]
