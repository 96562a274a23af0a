"""``WorkerShares``: a worker sheds a connection only while it holds two more than the least
loaded other live worker, one per refresh; files of workers that are gone are ignored and
cleaned up."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from serving.connections import WorkerShares


@pytest.fixture
def other_worker() -> Iterator[int]:
    """A live process standing in for another worker of the server."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process.pid
    process.kill()
    process.wait()


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_the_busier_worker_sheds_one_connection_per_refresh(tmp_path, other_worker) -> None:
    folder = tmp_path / "playbook-workers-1"
    shares = WorkerShares(folder, refresh_s=0.05)
    shares.join()
    assert (folder / str(shares.pid)).read_bytes().strip() == b"0"  # seen before any request
    (folder / str(other_worker)).write_bytes(b"1")
    (folder / str(_dead_pid())).write_bytes(b"0")  # a worker that is gone: not a peer
    for port in range(4):
        shares.saw(("127.0.0.1", port), now=10.0 + port * 0.001)
    shares.saw(("127.0.0.1", 0), now=10.1)  # a refresh: 4 held here, 1 there
    assert (shares.held, shares.others) == (4, [1])
    assert (folder / str(shares.pid)).read_bytes().strip() == b"4"
    assert shares.should_shed(("127.0.0.1", 0), now=10.1)
    assert shares.held == 3
    assert not shares.should_shed(("127.0.0.1", 1), now=10.11)  # one until the next refresh
    shares.saw(("127.0.0.1", 1), now=10.2)  # refreshed: connection 0 has not come back
    assert shares.held == 3 and shares.should_shed(("127.0.0.1", 1), now=10.2)
    (folder / str(other_worker)).write_bytes(b"3")
    shares.saw(("127.0.0.1", 2), now=10.3)  # 2 held against 3: even enough, nothing shed
    assert not shares.should_shed(("127.0.0.1", 2), now=10.3)
    shares.leave()
    assert not (folder / str(shares.pid)).exists()


def test_alone_or_even_nothing_is_shed(tmp_path, other_worker) -> None:
    shares = WorkerShares(tmp_path / "playbook-workers-2", refresh_s=0.05)
    shares.join()
    for port in range(5):
        shares.saw(("127.0.0.1", port), now=1.0)
    shares.saw(("127.0.0.1", 0), now=1.1)
    assert shares.others == [] and not shares.should_shed(("127.0.0.1", 0), now=1.1)
    (tmp_path / "playbook-workers-2" / str(other_worker)).write_bytes(b"4")
    shares.saw(("127.0.0.1", 0), now=1.2)
    assert shares.others == [4] and not shares.should_shed(("127.0.0.1", 0), now=1.2)
    shares.saw(("127.0.0.1", 0), now=2.0)  # the others went quiet: only one held now
    assert shares.held == 1


def test_joining_cleans_up_after_servers_and_workers_that_are_gone(tmp_path) -> None:
    gone_server = tmp_path / f"playbook-workers-{_dead_pid()}"
    gone_server.mkdir()
    (gone_server / str(_dead_pid())).write_bytes(b"3")
    live = tmp_path / "playbook-workers-1"  # pid 1 is alive
    live.mkdir()
    gone_worker = live / str(_dead_pid())
    gone_worker.write_bytes(b"2")
    WorkerShares(live).join()
    assert not gone_server.exists() and not gone_worker.exists()


def test_an_unwritable_folder_leaves_the_worker_alone(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    shares = WorkerShares(tmp_path / "file" / "playbook-workers-1")
    shares.join()  # no error: shares off
    shares.saw(("127.0.0.1", 1), now=1.0)
    assert not shares.should_shed(("127.0.0.1", 1), now=1.0)
