"""The one-writer lock of a home's use case, held by real processes (``runtime.home_lock``)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from runtime.home_lock import HomeBusy, holder_of, lock_path, writer_lock
from tests.conftest import REPO

HOLD = """
import sys, time
from runtime.home_lock import writer_lock
with writer_lock(sys.argv[1], sys.argv[2]):
    print("held", flush=True)
    time.sleep(float(sys.argv[3]))
"""


@contextmanager
def holder(home: Path, use_case: str, seconds: float = 60) -> Iterator[subprocess.Popen[str]]:
    """Another process holding ``use_case``'s lock for ``seconds``."""
    process = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(HOLD), str(home), use_case, str(seconds)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "held"
        yield process
    finally:
        process.kill()
        process.wait(timeout=10)


def test_a_second_writer_is_told_who_holds_the_use_case(tmp_path: Path) -> None:
    with holder(tmp_path, "fraud") as other:
        with pytest.raises(HomeBusy) as busy:
            with writer_lock(tmp_path, "fraud"):
                pytest.fail("took a lock another process holds")
        message = str(busy.value)
        assert "\n" not in message
        assert f"use case 'fraud' on home {tmp_path}" in message
        assert f"pid {other.pid} on {socket.gethostname()} since 20" in message
        assert "-c" in message  # the holder's command line
        assert busy.value.holder is not None and busy.value.holder.pid == other.pid
        with writer_lock(tmp_path, "feed"):  # another use case of the same home is free
            pass
    assert lock_path(tmp_path, "fraud") == tmp_path / "locks" / "fraud.lock"


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    with holder(tmp_path, "fraud") as other:
        assert holder_of(tmp_path, "fraud").pid == other.pid
        os.kill(other.pid, signal.SIGKILL)
        other.wait(timeout=10)
        assert holder_of(tmp_path, "fraud") is None
        with writer_lock(tmp_path, "fraud"):
            assert holder_of(tmp_path, "fraud").pid == os.getpid()
    assert holder_of(tmp_path, "fraud") is None


def test_wait_blocks_until_the_holder_ends_and_names_it_first(tmp_path: Path) -> None:
    told: list[HomeBusy] = []
    with holder(tmp_path, "fraud", seconds=1.5) as other:
        asked = time.monotonic()
        with writer_lock(tmp_path, "fraud", wait=True, on_wait=told.append):
            assert time.monotonic() - asked > 1  # the holder's 1.5 s, less its start
            assert holder_of(tmp_path, "fraud").pid == os.getpid()
    assert [busy.holder.pid for busy in told if busy.holder] == [other.pid]


def test_the_lock_is_reentrant_in_its_process_and_released_by_the_outer_exit(
    tmp_path: Path,
) -> None:
    with writer_lock(tmp_path, "fraud"):
        with writer_lock(tmp_path, "fraud"):  # an in-process run of the command that holds it
            pass
        assert holder_of(tmp_path, "fraud").pid == os.getpid()
    with holder(tmp_path, "fraud", seconds=0):  # another process can take it now
        pass


def test_a_home_on_object_storage_locks_a_local_file(tmp_path: Path) -> None:
    path = lock_path("s3://bucket/home", "fraud")
    assert path.name == "fraud.lock" and "://" not in str(path)
    assert path != lock_path("s3://bucket/other", "fraud")
