"""``WorkerShares``: a worker sheds connections only while it holds two more than the least
loaded other live worker, half the difference per refresh; files of workers that are gone are ignored and
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


def test_the_busier_worker_sheds_half_the_difference_per_refresh(tmp_path, other_worker) -> None:
    folder = tmp_path / "playbook-workers-1"
    shares = WorkerShares(folder, refresh_s=0.05)
    shares.join()
    assert (folder / str(shares.pid)).read_bytes().strip() == b"0"  # seen before any request
    (folder / str(other_worker)).write_bytes(b"1")
    (folder / str(_dead_pid())).write_bytes(b"0")  # a worker that is gone: not a peer
    for port in range(6):
        shares.saw(("127.0.0.1", port), now=10.0 + port * 0.001)
    shares.saw(("127.0.0.1", 0), now=10.1)  # a refresh: 6 held here, 1 there
    assert (shares.held, shares.others) == (6, [1])
    assert (folder / str(shares.pid)).read_bytes().strip() == b"6"
    assert shares.should_shed(("127.0.0.1", 0)) and shares.should_shed(("127.0.0.1", 1))
    assert not shares.should_shed(("127.0.0.1", 2))  # (6 - 1) // 2 until the next refresh
    assert shares.held == 4
    shares.saw(("127.0.0.1", 2), now=10.2)  # refreshed: 0 and 1 have not come back
    assert shares.held == 4 and shares.should_shed(("127.0.0.1", 2))
    assert not shares.should_shed(("127.0.0.1", 3))
    (folder / str(other_worker)).write_bytes(b"2")
    shares.saw(("127.0.0.1", 3), now=10.3)  # 3 held against 2: even enough, nothing shed
    assert not shares.should_shed(("127.0.0.1", 3))
    shares.leave()
    assert not (folder / str(shares.pid)).exists()


def test_alone_or_even_nothing_is_shed(tmp_path, other_worker) -> None:
    shares = WorkerShares(tmp_path / "playbook-workers-2", refresh_s=0.05)
    shares.join()
    for port in range(5):
        shares.saw(("127.0.0.1", port), now=1.0)
    shares.saw(("127.0.0.1", 0), now=1.1)
    assert shares.others == [] and not shares.should_shed(("127.0.0.1", 0))
    (tmp_path / "playbook-workers-2" / str(other_worker)).write_bytes(b"4")
    shares.saw(("127.0.0.1", 0), now=1.2)
    assert shares.others == [4] and not shares.should_shed(("127.0.0.1", 0))
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
    assert not shares.should_shed(("127.0.0.1", 1))
