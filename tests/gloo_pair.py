"""Two real ``torch.distributed`` processes (gloo on 127.0.0.1) for the DDP gradient tests.

Each rank joins the group, runs the test's body, and leaves with ``os._exit``: no destructor
runs. Letting the process wind down normally can deadlock, and did in this suite: the
``DistributedDataParallel`` module's reducer, freed with the GIL held, drops the last reference
to the gloo process group, whose destructor joins gloo's worker thread, which is waiting for the
GIL to free a Python object of its own (seen with gdb: ``~ProcessGroupGloo`` in
``std::thread::join`` on one side, ``take_gil`` in ``pt_gloo_runloop`` on the other). The body
has written its results to files by then, and the kernel closes the connections.

Pinned to loopback and bounded in time: gloo picks its network device from the machine's
hostname unless ``GLOO_SOCKET_IFNAME`` names one, and waits 30 minutes for a peer by default.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from datetime import timedelta

import torch.distributed as dist
import torch.multiprocessing as mp

from tests.ray_cluster import free_port

RENDEZVOUS_TIMEOUT = timedelta(seconds=120)


def _rank(rank: int, body: Callable[..., None], port: int, *args: object) -> None:
    """One spawned rank: join, run ``body(rank, *args)``, exit 0 (1 with the traceback)."""
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    code = 0
    try:
        dist.init_process_group(
            "gloo",
            init_method=f"tcp://127.0.0.1:{port}",
            rank=rank,
            world_size=2,
            timeout=RENDEZVOUS_TIMEOUT,
        )
        body(rank, *args)
    except BaseException:  # noqa: BLE001 (reported, then the exit code fails the test)
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def spawn_pair(body: Callable[..., None], *args: object) -> None:
    """Run ``body(rank, *args)`` in two spawned ranks of one gloo group and wait for both; a
    rank that raises fails the caller (``mp.spawn`` reports its exit code)."""
    mp.spawn(_rank, args=(body, free_port(), *args), nprocs=2, join=True)
