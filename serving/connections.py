"""A cap on requests per kept-alive connection, so that connections even out across workers.

BentoML's worker processes share one listening socket, and a connection stays with the worker
that accepted it for as long as the client keeps it alive. Eight clients that connect at once
are dealt out by an accept race: measured on the fraud service with 2 workers, 6 connections on
one worker and 2 on the other, so one core queued three times the other's requests and set the
p99 (``bench/serving_latency.py`` reports the split as ``conns/worker``).

The remedy is nginx's ``keepalive_requests`` (and Envoy's ``max_requests_per_connection``): after
``limit`` requests a connection's answer says ``Connection: close``, the client reconnects, and
the new connection goes to whichever worker accepts first, which is the one waiting in its event
loop rather than the one busy with a batch. Load moves towards the idle worker at the price of one
loopback handshake per ``limit`` requests. uvicorn honours the header an application sets
(it ends the keep-alive after that response); HTTP/1.1 clients reconnect on it by the standard.

Plain ASGI, no BentoML: the service adds it as a middleware (:mod:`serving.service`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
_CLOSE = (b"connection", b"close")
# connections remembered at most; past it the counts start over (a client that went away
# without a closing answer leaves its entry behind)
_REMEMBERED = 4096


class KeepAliveLimit:
    """ASGI middleware: the ``limit``-th answer on one connection closes it, and so does the
    first answer after ``max_age_s`` since the connection's first request (0: no such limit).

    The age matters for slow endpoints: eight clients of the feed (about 25 requests a second
    each) reach 100 requests only after 4 s, and a burst of connections that one worker accepted
    together would stay there that long. Envoy calls it ``max_connection_duration``.

    A connection is known by its client address and port (``scope["client"]``), which no two
    open connections share.
    """

    def __init__(self, app: Callable, limit: int, max_age_s: float = 0.0) -> None:
        if limit < 0:
            raise ValueError(f"limit must be 0 (none) or more, got {limit}")
        if max_age_s < 0:
            raise ValueError(f"max_age_s must be 0 (none) or more, got {max_age_s}")
        self.app = app
        self.limit = limit
        self.max_age_s = max_age_s
        self.counts: dict[tuple[Any, ...], tuple[int, float]] = {}  # (requests, first at)
        self.closed = 0  # connections this worker asked to close

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        client = scope.get("client")
        if scope["type"] != "http" or not (self.limit or self.max_age_s) or client is None:
            await self.app(scope, receive, send)
            return
        key = tuple(client)
        now = time.monotonic()
        count, first = self.counts.pop(key, (0, now))
        count += 1
        too_many = bool(self.limit) and count >= self.limit
        too_old = bool(self.max_age_s) and now - first >= self.max_age_s
        if not (too_many or too_old):
            if len(self.counts) >= _REMEMBERED:
                self.counts.clear()
            self.counts[key] = (count, first)
            await self.app(scope, receive, send)
            return

        async def closing(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"connection"]
                message["headers"] = [*headers, _CLOSE]
            await send(message)

        self.closed += 1
        await self.app(scope, receive, closing)
