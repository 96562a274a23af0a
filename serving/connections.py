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

from collections.abc import Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
_CLOSE = (b"connection", b"close")
# connections remembered at most; past it the counts start over (a client that went away
# without a closing answer leaves its entry behind)
_REMEMBERED = 4096


class KeepAliveLimit:
    """ASGI middleware: the ``limit``-th answer on one connection closes it (0: no limit).

    A connection is known by its client address and port (``scope["client"]``), which no two
    open connections share.
    """

    def __init__(self, app: Callable, limit: int) -> None:
        if limit < 0:
            raise ValueError(f"limit must be 0 (none) or more, got {limit}")
        self.app = app
        self.limit = limit
        self.counts: dict[tuple[Any, ...], int] = {}
        self.closed = 0  # connections this worker asked to close

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        client = scope.get("client")
        if scope["type"] != "http" or not self.limit or client is None:
            await self.app(scope, receive, send)
            return
        key = tuple(client)
        count = self.counts.pop(key, 0) + 1
        if count < self.limit:
            if len(self.counts) >= _REMEMBERED:
                self.counts.clear()
            self.counts[key] = count
            await self.app(scope, receive, send)
            return

        async def closing(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"connection"]
                message["headers"] = [*headers, _CLOSE]
            await send(message)

        self.closed += 1
        await self.app(scope, receive, closing)
