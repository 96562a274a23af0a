"""A real multi-node Ray cluster on 127.0.0.1 for the tests, started and stopped by this process.

Plain ``ray start`` rewrites 127.0.0.1 to the machine's own address; Ray's own
``ray.cluster_utils.Cluster`` with ``node_ip_address="127.0.0.1"`` stays on loopback (see the
shared note ``ray-on-one-machine.md``). Every port a node would take by default is a free one
instead, so parallel test workers never collide, and each node gets 1 CPU and 1 GiB of object
store, so two nodes fit beside the rest of a test run.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pytest

RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
os.environ.update(RAY_ENV)  # read once, when Ray is first imported
NODE = {"num_cpus": 1, "node_ip_address": "127.0.0.1", "object_store_memory": 1 << 30}


def free_ports(count: int) -> list[int]:
    """``count`` different ports nothing on 127.0.0.1 listens on right now: every socket is
    held until all are bound, so the OS cannot hand the same port out twice (two components
    of one node on one port stop Ray's start)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def free_port() -> int:
    """A port nothing on 127.0.0.1 listens on right now."""
    return free_ports(1)[0]


AGENT_PORTS = ("dashboard_agent_listen_port", "metrics_agent_port", "runtime_env_agent_port")


def agent_ports(*others: str) -> dict[str, int]:
    """Every fixed-by-default port of a node's agents (and ``others``), free and different."""
    names = (*AGENT_PORTS, *others)
    return dict(zip(names, free_ports(len(names)), strict=True))


@contextmanager
def loopback_cluster(system_config: Mapping[str, Any] | None = None) -> Iterator[Any]:
    """A head and one worker node on 127.0.0.1, 1 CPU each, ``RAY_ADDRESS`` unset meanwhile;
    ``system_config`` is the head's ``_system_config`` (e.g. faster failure detection)."""
    from ray.cluster_utils import Cluster  # a dependency: a missing Ray fails, never skips

    with pytest.MonkeyPatch.context() as patch:
        for key, value in RAY_ENV.items():
            patch.setenv(key, value)
        patch.delenv("RAY_ADDRESS", raising=False)
        head = {
            **NODE,
            **agent_ports("gcs_server_port", "ray_client_server_port"),
            "include_dashboard": False,
            "dashboard_host": "127.0.0.1",
        }
        if system_config:
            head["_system_config"] = dict(system_config)
        started = Cluster(initialize_head=True, head_node_args=head)
        try:
            started.add_node(**NODE, **agent_ports())
            started.wait_for_nodes()
            yield started
        finally:
            started.shutdown()
