"""What every PyTorch fit through Ray Train's TorchTrainer shares, whatever it trains: the DDP
backend, the sharded batch loader, the run under the execution's storage, and the best epoch's
weights coming back through the run's checkpoint.

The two-tower (``runtime.ray_torch``) and the sequence retriever (``runtime.ray_sequence``)
differ only in their encoded data and their loss; the rest is one convention here:

- **Workers**: :func:`runtime.ray_workers.cluster_layout`, one worker per node on CPUs, DDP
  over gloo (NCCL needs GPUs), spread over the nodes.
- **Rows**: a ``DataLoader`` over row indices prepared by ``ray.train.torch
  .prepare_data_loader``, which adds ``DistributedSampler`` (equal, padded shares; call
  ``set_epoch`` for a new shuffle each epoch).
- **Back**: rank 0 keeps the best epoch's weights (every worker holds identical weights after a
  DDP step) and saves them, with the history, into the run's final checkpoint; every worker
  adds its record (node, rows, seconds). The driver reads them and removes the run folder: the
  weights are loaded into the caller's own model, the class the bundle, MLflow and serving load.

Imported only by a Ray run (``runtime.training_engine``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
from ray.train import Checkpoint, RunConfig, ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer
from torch.utils.data import DataLoader, TensorDataset

from runtime.ray_workers import (
    RUNS_FOLDER,
    WorkerLayout,
    cluster_layout,
    worker_records,
    write_worker_record,
)
from runtime.shards import Execution

BACKEND = "gloo"  # CPU workers: NCCL needs GPUs


@dataclass(frozen=True)
class WorkerStart:
    """What a worker loop learns first: its rank among ``world`` workers, its device, and the
    payload the driver put in the object store."""

    rank: int
    world: int
    device: torch.device
    payload: dict[str, Any]


def start_worker(config: Mapping[str, Any]) -> WorkerStart:
    """A worker loop's first call: its threads set to its CPU share, its rank and payload."""
    context = ray.train.get_context()
    torch.set_num_threads(config["threads"])
    return WorkerStart(
        context.get_world_rank(),
        context.get_world_size(),
        ray.train.torch.get_device(),
        ray.get(config["payload"]),
    )


def worker_record(rank: int, started: float, **counts: int) -> dict[str, Any]:
    """The record a worker leaves: rank, node, process, ``counts`` (its ``rows`` per epoch,
    ``examples`` over the fit, ...) and its seconds since ``started``."""
    return {
        "rank": rank,
        "node": ray.get_runtime_context().get_node_id(),
        "pid": os.getpid(),
        **counts,
        "seconds": time.perf_counter() - started,
    }


def data_loader(rows: torch.Tensor, batch_size: int) -> DataLoader:
    """Shuffled batches of row indices, with Ray Train's ``DistributedSampler`` added."""
    loader = DataLoader(TensorDataset(rows), batch_size=max(1, batch_size), shuffle=True)
    return ray.train.torch.prepare_data_loader(loader)


def global_mean(total: float, count: int) -> float:
    """The mean of ``total / count`` over every worker's sums (one all-reduce)."""
    sums = torch.tensor([total, float(count)], dtype=torch.float64)
    if dist.is_initialized():
        dist.all_reduce(sums)
    return float(sums[0] / max(sums[1], 1.0))


def report_fit(
    config: Mapping[str, Any],
    rank: int,
    worker: dict[str, Any],
    weights: Mapping[str, torch.Tensor],
    history: list[dict[str, float]],
    epoch_seconds: list[float],
) -> None:
    """A worker's last call: its record, and on rank 0 the kept weights and history, reported
    as the run's checkpoint (Ray merges every worker's folder into one); ``config`` is the
    worker loop's, from :func:`fit_on_ray`."""
    with tempfile.TemporaryDirectory() as folder:
        write_worker_record(folder, rank, worker)
        if rank == 0:
            torch.save(
                {
                    "state_dict": {k: v.detach().cpu() for k, v in weights.items()},
                    "history": history,
                    "epoch_seconds": epoch_seconds,
                },
                Path(folder, config["model_file"]),
            )
        ray.train.report(
            {"rank": rank, "node": worker["node"]}, checkpoint=Checkpoint.from_directory(folder)
        )


@dataclass(frozen=True)
class TorchTraining:
    """A fit on Ray Train: the best epoch's weights, its history, what each worker did."""

    state_dict: dict[str, torch.Tensor]
    history: list[dict[str, float]]
    epoch_seconds: list[float]
    workers: list[dict]
    layout: WorkerLayout
    seconds: float

    @property
    def nodes(self) -> list[str]:
        return sorted({w["node"] for w in self.workers})

    @property
    def examples(self) -> int:
        """Training examples seen over all workers and epochs."""
        return sum(int(w["examples"]) for w in self.workers)


def fit_on_ray(
    worker_loop: Callable[[dict], None],
    payload: Mapping[str, Any],
    name: str,
    execution: Execution,
    layout: WorkerLayout | None = None,
) -> TorchTraining:
    """Run ``worker_loop`` on every worker of ``layout`` (default: one per node of the
    connected cluster) with ``payload`` (put once in the object store, fetched by the workers
    from ``config["payload"]``; ``config["threads"]`` is each worker's CPU share), the run under
    the execution's storage, named after ``name``; its checkpoint must come from
    :func:`report_fit`, the weights saved as ``<name>.pt``."""
    layout = layout or cluster_layout()
    started = time.perf_counter()
    model_file = f"{name}.pt"  # rank 0's best weights and history, in the run's checkpoint
    storage = execution.storage / RUNS_FOLDER
    storage.mkdir(parents=True, exist_ok=True)
    trainer = TorchTrainer(
        worker_loop,
        train_loop_config={
            "payload": ray.put(dict(payload)),
            "threads": layout.threads,
            "model_file": model_file,
        },
        torch_config=TorchConfig(backend=BACKEND),
        scaling_config=ScalingConfig(
            num_workers=layout.workers,
            use_gpu=False,
            resources_per_worker={"CPU": layout.cpus},
            placement_strategy="SPREAD",
        ),
        run_config=RunConfig(
            name=f"{name.replace('_', '-')}-{uuid.uuid4().hex[:12]}", storage_path=str(storage)
        ),
    )
    result = trainer.fit()
    try:
        with result.checkpoint.as_directory() as folder:
            saved = torch.load(Path(folder, model_file), weights_only=True)
            records = worker_records(folder)
    finally:
        shutil.rmtree(result.path, ignore_errors=True)  # the weights are the caller's now
    return TorchTraining(
        saved["state_dict"],
        saved["history"],
        saved["epoch_seconds"],
        records,
        layout,
        time.perf_counter() - started,
    )
