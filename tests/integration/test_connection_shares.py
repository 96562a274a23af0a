"""Connections even out across real worker processes: eight kept-alive clients all on one
uvicorn worker move to 4+4 once a second worker of the same server is up.

Two worker processes share one listening socket, as ``bentoml serve``'s workers do, and are
children of this test process (so they are one server to :class:`WorkerShares`). The first
serves alone until all eight clients have connected to it; then the second starts. Without the
shares nothing would move (no request limit is set); with them the first worker closes
connections one at a time while it holds two more than the second, and the clients reconnect.
"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORKER = """
import os, socket, sys
import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from serving.connections import KeepAliveLimit, WorkerShares

async def who(request):
    return PlainTextResponse(str(os.getpid()))

shares = WorkerShares.of_server()
shares.join()
app = KeepAliveLimit(Starlette(routes=[Route("/who", who)]), limit=0, shares=shares)
config = uvicorn.Config(app, log_level="error")
print("serving", flush=True)
uvicorn.Server(config).run(sockets=[socket.socket(fileno=int(sys.argv[1]))])
"""


def _worker(listener: socket.socket) -> subprocess.Popen:
    fd = listener.fileno()
    process = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(fd)],
        pass_fds=[fd],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "serving"
    return process


def _ask(connection: http.client.HTTPConnection) -> int:
    """One request (http.client reconnects after a ``Connection: close``); the answering pid."""
    for attempt in range(50):
        try:
            connection.request("GET", "/who")
            return int(connection.getresponse().read())
        except (ConnectionError, http.client.HTTPException):
            connection.close()  # the worker is still starting: its accept loop comes up soon
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("no answer")


def test_eight_connections_on_one_worker_even_out_when_a_second_comes_up() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.set_inheritable(True)
    port = listener.getsockname()[1]
    first = _worker(listener)
    second = None
    try:
        clients = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(8)]
        assert {_ask(c) for c in clients} == {first.pid}  # all eight on the first worker
        second = _worker(listener)
        last: dict[int, int] = {}
        stop = time.monotonic() + 4

        def client(i: int) -> None:
            while time.monotonic() < stop:
                last[i] = _ask(clients[i])

        threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        split = Counter(last.values())
        assert set(split) == {first.pid, second.pid} and sorted(split.values()) == [4, 4], split
    finally:
        for process in (first, second):
            if process is not None:
                process.terminate()
                process.wait(10)
        listener.close()
