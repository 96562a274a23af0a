"""Two real ``torch.distributed`` processes (gloo on 127.0.0.1) for the DDP gradient tests.

Pinned to loopback and bounded in time: gloo picks its network device from the machine's
hostname unless ``GLOO_SOCKET_IFNAME`` names one, and waits 30 minutes for a peer by default.
On a CI machine whose hostname resolves to another interface, or where one process dies early,
that is a run that hangs until CI's own limit instead of a test that fails in a minute.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta

import torch.distributed as dist
import torch.multiprocessing as mp

from tests.ray_cluster import free_port

RENDEZVOUS_TIMEOUT = timedelta(seconds=120)


def init_gloo(rank: int, port: int) -> None:
    """Join the two-process group as ``rank`` (called first thing in each spawned worker)."""
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=2,
        timeout=RENDEZVOUS_TIMEOUT,
    )


def spawn_pair(worker: Callable[..., None], *args: object) -> None:
    """Run ``worker(rank, port, *args)`` in two spawned processes and wait for both; a worker
    that raises fails the caller (``mp.spawn`` stops the other one)."""
    mp.spawn(worker, args=(free_port(), *args), nprocs=2, join=True)
