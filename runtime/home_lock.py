"""One writer per home and use case: an OS lock on ``<home>/locks/<use case>.lock``.

Two ``playbook materialize fraud`` on one home used to both train, both register (v3, v4) and
both run the promotion gate, the second against the first's fresh version, and both Bentos
claimed the same champion. Whoever writes a use case's state (tables, registry, Bentos) takes
this lock first; a second writer is told who holds it and stops, or waits when asked to.

Why ``fcntl.flock`` on an open file: the kernel drops the lock when the holder's process ends,
however it ends (SIGKILL, OOM killer), so a crashed writer never leaves a stale lock for someone
to delete by hand. Why not ``filelock.FileLock``, which uses the same call: it truncates the
file when it opens it, which would wipe the holder's description while a contender looks at
it. The holder writes who it is (pid, host, since when, command) into the file it locked; a
contender reads that for its message. The file is never deleted (deleting a lock file races
with a process that has it open but not yet locked).

The lock is re-entrant per process: code that already holds it (``playbook materialize`` running
an asset in-process) may take it again, a no-op. Its file descriptor is close-on-exec, so a
program started from the holder does not keep the lock alive after the holder dies.

A home on object storage (``s3://...``) cannot hold an OS lock: its lock file is a local one
named after the home's URL, which keeps writers on this machine apart, not writers elsewhere.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shlex
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from runtime.layout import HomeLayout, home_location

_HOLDER_BYTES = 4096
_COMMAND_CHARS = 300


@dataclass(frozen=True)
class Holder:
    """Who holds a use case's lock, as the holder wrote it into the lock file."""

    pid: int
    host: str
    since: str  # when it took the lock, UTC, ISO 8601
    command: str

    @classmethod
    def current(cls) -> Holder:
        """This process, now."""
        argv = [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv and sys.argv[0] else []
        command = shlex.join(argv) or sys.executable
        if len(command) > _COMMAND_CHARS:
            command = command[: _COMMAND_CHARS - 3] + "..."
        return cls(
            pid=os.getpid(),
            host=socket.gethostname(),
            since=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            command=command,
        )

    @classmethod
    def parse(cls, text: str) -> Holder | None:
        """The holder a lock file describes; None when it is empty or half-written."""
        try:
            fields = json.loads(text)
            return cls(
                int(fields["pid"]),
                str(fields["host"]),
                str(fields["since"]),
                str(fields["command"]),
            )
        except (ValueError, KeyError, TypeError):
            return None

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} since {self.since} ({self.command})"


class HomeBusy(RuntimeError):
    """Another process is the writer of this use case on this home."""

    def __init__(self, use_case: str, home: str, holder: Holder | None, hint: str = "") -> None:
        self.use_case, self.home, self.holder = use_case, home, holder
        who = holder.describe() if holder else "a process that has not said who it is yet"
        tail = f"; {hint}" if hint else ""
        super().__init__(
            f"use case {use_case!r} on home {home} is being written by {who}"
            f" (lock file {lock_path(home, use_case)}){tail}"
        )


def lock_path(home: str | os.PathLike[str], use_case: str) -> Path:
    """The lock file of ``use_case`` in ``home`` (:meth:`HomeLayout.lock`), or for a home on
    object storage a local file named after its URL."""
    location = home_location(home)
    if "://" in location:
        digest = hashlib.sha256(location.encode()).hexdigest()[:16]
        root = Path(tempfile.gettempdir()) / "playbook-locks" / digest
        return root / f"{use_case}.lock"
    return HomeLayout(Path(location)).lock(use_case)


# lock file -> [descriptor, depth] of the locks this process holds
_HELD: dict[Path, list[int]] = {}
_GUARD = threading.Lock()


def _read_holder(fd: int) -> Holder | None:
    """The holder's description; a holder that has just locked writes it a moment later."""
    for _ in range(10):
        holder = Holder.parse(os.pread(fd, _HOLDER_BYTES, 0).decode("utf-8", "replace"))
        if holder is not None:
            return holder
        time.sleep(0.05)
    return None


def _acquire(
    path: Path,
    home: str,
    use_case: str,
    wait: bool,
    on_wait: Callable[[HomeBusy], None] | None,
) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            busy = HomeBusy(use_case, home, _read_holder(fd))
            if not wait:
                raise busy from None
            if on_wait is not None:
                on_wait(busy)
            fcntl.flock(fd, fcntl.LOCK_EX)
        text = json.dumps(asdict(Holder.current())).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, text, 0)
    except BaseException:
        os.close(fd)  # closing the descriptor releases the lock if it was taken
        raise
    return fd


def _release(fd: int) -> None:
    try:
        os.ftruncate(fd, 0)  # the next contender must not read a holder that has gone
    finally:
        os.close(fd)


@contextmanager
def writer_lock(
    home: str | os.PathLike[str] | None,
    use_case: str,
    *,
    wait: bool = False,
    on_wait: Callable[[HomeBusy], None] | None = None,
) -> Iterator[Path]:
    """Be the one writer of ``use_case`` in ``home`` (None: :func:`runtime.layout.home_location`)
    for the ``with`` block; yields the lock file.

    Raises :class:`HomeBusy` (naming the holder) when another process holds it, unless ``wait``:
    then ``on_wait`` is told who holds it and the call blocks until the lock is free.
    """
    shown = home_location(home)
    path = lock_path(shown, use_case)
    with _GUARD:
        held = _HELD.get(path)
        if held is not None:
            held[1] += 1
    if held is None:
        fd = _acquire(path, shown, use_case, wait, on_wait)
        with _GUARD:
            _HELD[path] = [fd, 1]
    try:
        yield path
    finally:
        with _GUARD:
            entry = _HELD[path]
            entry[1] -= 1
            if entry[1] == 0:
                del _HELD[path]
                _release(entry[0])


def holder_of(home: str | os.PathLike[str], use_case: str) -> Holder | None:
    """Who holds ``use_case``'s lock right now (None: nobody), without taking it."""
    path = lock_path(home, use_case)
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(fd) or Holder(0, "?", "?", "?")
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
