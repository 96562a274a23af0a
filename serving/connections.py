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

That remedy alone did not even them out on a busy 2-core machine: the worker that closes a
connection is the one running, so it often accepted the reconnection itself, and closing at a
fixed count also moved connections off the less busy worker (the benchmark's snapshots read 6+2,
7+1, 5+3 as often as 4+4, and the p99 followed the busier worker: fraud, 2 workers, 8 clients,
6.1-8.2 ms at 4+4, 9.9-14.2 ms otherwise). With several workers, each now says how many
connections it holds in a small file (:class:`WorkerShares`, one folder per server: its workers
share a parent process), and a worker closes connections only while it holds at least two more
than the least loaded of the others, half the difference at a time; the others keep theirs. A connection that
lands on the busy worker again is closed again by a later answer, so the split settles at even
and stays there without a reconnection a second.

Plain ASGI, no BentoML: the service adds it as a middleware (:mod:`serving.service`).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
_CLOSE = (b"connection", b"close")
# connections remembered at most; past it the counts start over (a client that went away
# without a closing answer leaves its entry behind)
_REMEMBERED = 4096


class WorkerShares:
    """How many connections each worker process of one server holds, through one small file per
    worker (named by its pid, holding the count) in a folder named for the server.

    A worker counts the connections it answered in the last ``window_s`` (a kept-alive client
    sends again as soon as its answer arrives); every ``refresh_s`` it writes its count and
    reads the others' (a file whose process is gone is skipped). Between refreshes, decisions use
    the last counts. Nothing here blocks: a file that cannot be written or read leaves the worker
    deciding alone, as without shares.
    """

    def __init__(self, folder: Path, refresh_s: float = 0.05, window_s: float = 0.25) -> None:
        self.folder = folder
        self.refresh_s = refresh_s
        self.window_s = window_s
        self.pid = os.getpid()
        self.held = 0  # this worker's count at the last refresh, less what it shed since
        self.others: list[int] = []  # the other live workers' counts at the last refresh
        self._seen: dict[tuple[Any, ...], float] = {}  # connection -> when last answered
        self._file: int | None = None
        self._refreshed = float("-inf")
        self._to_shed = 0  # connections this worker may still close before the next refresh

    @classmethod
    def of_server(cls) -> WorkerShares:
        """The shares of the server this process is a worker of: its workers are children of
        one process (``bentoml serve``'s arbiter, uvicorn's supervisor)."""
        return cls(Path(tempfile.gettempdir()) / f"playbook-workers-{os.getppid()}")

    def join(self) -> None:
        """Create this worker's file (count 0), so that the others see it before its first
        connection; it is removed when the process exits."""
        if self._file is not None:
            return
        _remove_dead(self.folder.parent, self.folder.name.rsplit("-", 1)[0])
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            path = self.folder / str(self.pid)
            self._file = os.open(path, os.O_CREAT | os.O_RDWR | os.O_TRUNC, 0o600)
            self._write(0)
        except OSError as error:
            log.warning("connection shares off: %s (%s)", self.folder, error)
            self._file = None
            return
        atexit.register(self.leave)

    def leave(self) -> None:
        if self._file is None:
            return
        os.close(self._file)
        self._file = None
        with contextlib.suppress(OSError):
            (self.folder / str(self.pid)).unlink()

    def saw(self, key: tuple[Any, ...], now: float) -> None:
        """A request on connection ``key``; refreshes the counts when they are due."""
        self._seen[key] = now
        if now - self._refreshed >= self.refresh_s:
            self._refresh(now)

    def should_shed(self, key: tuple[Any, ...]) -> bool:
        """Whether this answer should close its connection: at a refresh where this worker
        holds two or more connections more than the least loaded other worker, it may close
        half the difference (26 against 6: 10), one per answer, before the next refresh; the
        reconnections have to land before the counts say anything new."""
        if self._to_shed <= 0:
            return False
        self._to_shed -= 1
        self._seen.pop(key, None)
        self.held -= 1
        return True

    def _refresh(self, now: float) -> None:
        self._refreshed = now
        horizon = now - self.window_s
        self._seen = {k: t for k, t in self._seen.items() if t >= horizon}
        self.held = len(self._seen)
        if self._file is None:
            return
        self._write(self.held)
        self.others = self._read_others()
        fewest = min(self.others, default=self.held)
        self._to_shed = (self.held - fewest) // 2 if self.held >= fewest + 2 else 0

    def _write(self, count: int) -> None:
        assert self._file is not None
        os.pwrite(self._file, f"{count:>10}".encode(), 0)

    def _read_others(self) -> list[int]:
        counts = []
        with contextlib.suppress(OSError):
            for name in os.listdir(self.folder):
                if not name.isdigit() or int(name) == self.pid or not _alive(int(name)):
                    continue
                with contextlib.suppress(OSError, ValueError):
                    counts.append(int((self.folder / name).read_bytes() or b"0"))
        return counts


def _remove_dead(parent: Path, prefix: str) -> None:
    """Remove the folders of servers that are gone and the files of workers that are gone: a
    worker killed, or ended by ``os._exit`` as multiprocessing ends its children, leaves its
    file behind."""
    with contextlib.suppress(OSError):
        for folder in parent.glob(f"{prefix}-*"):
            server = folder.name.rsplit("-", 1)[1]
            for file in folder.iterdir() if folder.is_dir() else ():
                named = server.isdigit() and file.name.isdigit()
                if not named or not _alive(int(server)) or not _alive(int(file.name)):
                    with contextlib.suppress(OSError, ValueError):
                        file.unlink()
            if server.isdigit() and not _alive(int(server)):
                with contextlib.suppress(OSError):
                    folder.rmdir()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


class KeepAliveLimit:
    """ASGI middleware: the ``limit``-th answer on one connection closes it, and so does the
    first answer after ``max_age_s`` since the connection's first request (0: no such limit).

    The age matters for slow endpoints: eight clients of the feed (about 25 requests a second
    each) reach 100 requests only after 4 s, and a burst of connections that one worker accepted
    together would stay there that long. Envoy calls it ``max_connection_duration``.

    A connection is known by its client address and port (``scope["client"]``), which no two
    open connections share.
    """

    def __init__(
        self,
        app: Callable,
        limit: int,
        max_age_s: float = 0.0,
        shares: WorkerShares | None = None,
    ) -> None:
        """``shares`` (a server of several workers): once other workers are known, a connection
        is closed only to even out the workers' counts (see the module docstring), and ``limit``
        and ``max_age_s`` apply only while no other worker is."""
        if limit < 0:
            raise ValueError(f"limit must be 0 (none) or more, got {limit}")
        if max_age_s < 0:
            raise ValueError(f"max_age_s must be 0 (none) or more, got {max_age_s}")
        self.app = app
        self.shares = shares
        self.limit = limit
        self.max_age_s = max_age_s
        self.counts: dict[tuple[Any, ...], tuple[int, float]] = {}  # (requests, first at)
        self.closed = 0  # connections this worker asked to close

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        client = scope.get("client")
        limited = self.limit or self.max_age_s or self.shares is not None
        if scope["type"] != "http" or not limited or client is None:
            await self.app(scope, receive, send)
            return
        key = tuple(client)
        now = time.monotonic()
        shares = self.shares
        if shares is not None:
            shares.saw(key, now)
            if shares.others:
                if shares.should_shed(key):
                    self.closed += 1
                    await self.app(scope, receive, _closing(send))
                else:
                    await self.app(scope, receive, send)
                return
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
        self.closed += 1
        await self.app(scope, receive, _closing(send))


def _closing(send: Callable) -> Callable:
    """``send`` with ``Connection: close`` added to the answer's headers."""

    async def closing(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            headers = [h for h in message.get("headers", []) if h[0].lower() != b"connection"]
            message["headers"] = [*headers, _CLOSE]
        await send(message)

    return closing
