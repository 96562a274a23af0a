"""``KeepAliveLimit``: the limit-th answer on a connection closes it, on a real uvicorn server.

A client on one kept-alive connection gets ``limit - 1`` answers that keep it open and then one
that says ``Connection: close``, after which uvicorn has closed the socket (the next request on
it needs a new connection); a second connection counts on its own, and 0 means no limit.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from serving.connections import KeepAliveLimit


async def _ok(request) -> JSONResponse:
    return JSONResponse({"ok": True})


@contextmanager
def _server(limit: int, max_age_s: float = 0.0) -> Iterator[tuple[int, KeepAliveLimit]]:
    app = KeepAliveLimit(Starlette(routes=[Route("/ok", _ok)]), limit=limit, max_age_s=max_age_s)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield port, app
    finally:
        server.should_exit = True
        thread.join(10)


def _answers(connection: http.client.HTTPConnection, n: int) -> list[str | None]:
    headers = []
    for _ in range(n):
        connection.request("GET", "/ok")
        response = connection.getresponse()
        assert response.status == 200 and response.read() == b'{"ok":true}'
        headers.append(response.getheader("connection"))
    return headers


def test_the_limit_th_answer_closes_the_connection() -> None:
    with _server(limit=3) as (port, app):
        first = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        assert _answers(first, 3) == [None, None, "close"]
        assert first.sock is None  # http.client saw the close and dropped the socket
        other = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        assert _answers(other, 2) == [None, None]  # counted per connection
        assert _answers(first, 3) == [None, None, "close"]  # reconnected: a fresh count
        assert app.closed == 2


def test_zero_means_no_limit() -> None:
    with _server(limit=0) as (port, app):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        assert _answers(connection, 20) == [None] * 20
        assert app.closed == 0


def test_an_old_connection_is_closed_by_its_next_answer() -> None:
    with _server(limit=0, max_age_s=0.3) as (port, app):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        assert _answers(connection, 5) == [None] * 5  # young: kept, however many
        time.sleep(0.35)
        assert _answers(connection, 1) == ["close"]
        assert connection.sock is None and app.closed == 1
        assert _answers(connection, 2) == [None, None]  # the new connection is young again


def test_a_negative_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="0 \\(none\\) or more"):
        KeepAliveLimit(_ok, limit=-1)
    with pytest.raises(ValueError, match="max_age_s must be 0"):
        KeepAliveLimit(_ok, limit=0, max_age_s=-1)
