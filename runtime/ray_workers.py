"""What every Ray Train fit shares, whatever it trains: how many workers on which CPUs, where its
runs live, and the record each worker leaves in the run's checkpoint.

LightGBM (``runtime.ray_lightgbm``) and the towers (``runtime.ray_torch``) both place one worker
per node and read back, from the checkpoint, what each worker did (its node, rows, seconds): one
convention here, so a torch worker never imports LightGBM to learn it. Imported only by a Ray run.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray

RUNS_FOLDER = "ray_train"  # under the execution's storage
MIN_WORKERS = 2  # data parallel means at least two
_RECORD = "worker-{rank:04d}.json"


@dataclass(frozen=True)
class WorkerLayout:
    """How many Ray Train workers, and the CPUs (threads) each one takes."""

    workers: int
    cpus: float

    @property
    def threads(self) -> int:
        return max(1, int(self.cpus))


def worker_layout(node_cpus: Sequence[float]) -> WorkerLayout:
    """One worker per node with CPUs, each taking as many CPUs as the smallest such node has.

    Threads inside a node share memory, while machines exchange gradients or histograms over
    sockets, so one multi-threaded worker per node is cheaper than one worker per CPU. A single
    node still gets :data:`MIN_WORKERS` workers sharing its CPUs, so the data-parallel path is
    the one that runs.
    """
    nodes = [cpus for cpus in node_cpus if cpus >= 1]
    if not nodes:
        raise ValueError("the Ray cluster has no node with a CPU to train on")
    if len(nodes) >= MIN_WORKERS:
        return WorkerLayout(len(nodes), float(int(min(nodes))))
    return WorkerLayout(MIN_WORKERS, nodes[0] / MIN_WORKERS)


def cluster_layout() -> WorkerLayout:
    """:func:`worker_layout` of the alive nodes of the connected cluster."""
    return worker_layout([n["Resources"].get("CPU", 0.0) for n in ray.nodes() if n.get("Alive")])


def write_worker_record(folder: str | Path, rank: int, record: dict[str, Any]) -> None:
    """One worker's record, into the checkpoint folder it reports."""
    Path(folder, _RECORD.format(rank=rank)).write_text(json.dumps(record))


def worker_records(folder: str | Path) -> list[dict[str, Any]]:
    """Every worker's record in a checkpoint folder, in rank order."""
    return [json.loads(p.read_text()) for p in sorted(Path(folder).glob("worker-*.json"))]
