"""The two-tower retriever trained data-parallel by Ray Train's TorchTrainer (DDP, gloo, CPU).

Imported only when a retriever is trained while the use case's execution is Ray
(``runtime.training_engine``), so a local run never imports Ray.

How the work is cut, and why:

- **Encoded once, on the driver.** Vocabularies, feature encoders, the item table and logQ are
  fitted from the whole training set exactly as a local fit does (``assets.models.two_tower``),
  so the model that comes back has the same inputs, ids and catalog as a local one. The encoded
  tensors go to the workers through the object store, with the untrained model (its initial
  weights; DDP broadcasts rank 0's anyway).
- **Rows dealt by ``DistributedSampler``.** Each worker's positives and explicit negatives come
  from a ``DataLoader`` over row indices prepared by ``ray.train.torch.prepare_data_loader``,
  which adds the sampler (``set_epoch`` reshuffles every epoch); a worker takes
  ``batch_size / workers`` positives a step, so an epoch has the local fit's number of optimizer
  steps over the same global batch size, and each step's negatives are an equal share of the
  worker's negatives, as locally.
- **One objective.** ``ray.train.torch.prepare_model`` wraps :class:`TowerLoss` in DDP; its
  in-batch softmax scores each worker's rows against the positives of all workers
  (all-gathered with their gradients), so the loss is the one a single process with the global
  batch computes (:mod:`runtime.models.tower_loss`).
- **The best epoch back as a state dict.** Rank 0 scores the validation set after every epoch
  (every worker holds identical weights after a DDP step) and keeps the best epoch's weights;
  it saves them, with the history, into the run's final checkpoint under the execution's
  storage, and every worker adds a record (node, rows, seconds), which Ray merges into one
  folder. The caller loads the weights into its own ``TwoTowerModel``: the class the bundle,
  MLflow and serving load, built from the same encoders.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from itertools import zip_longest
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

from runtime.models.tower_loss import EncodedRows, TowerLoss, gather_rows, validation_loss
from runtime.models.two_tower import TowerInputs, TwoTowerModel
from runtime.ray_workers import (
    RUNS_FOLDER,
    WorkerLayout,
    cluster_layout,
    worker_records,
    write_worker_record,
)
from runtime.shards import Execution

MODEL_FILE = "two_tower.pt"  # rank 0's best weights and history, in the run's checkpoint
BACKEND = "gloo"  # CPU workers: NCCL needs GPUs

logger = logging.getLogger(__name__)


def _loader(rows: torch.Tensor, batch_size: int) -> DataLoader:
    """Shuffled batches of row indices, with Ray Train's ``DistributedSampler`` added."""
    loader = DataLoader(TensorDataset(rows), batch_size=max(1, batch_size), shuffle=True)
    return ray.train.torch.prepare_data_loader(loader)


def _global_mean(total: float, count: int) -> float:
    """The mean of ``total / count`` over every worker's sums (one all-reduce)."""
    sums = torch.tensor([total, float(count)], dtype=torch.float64)
    if dist.is_initialized():
        dist.all_reduce(sums)
    return float(sums[0] / max(sums[1], 1.0))


def two_tower_worker(config: dict) -> None:
    """Ray Train's loop on each worker: its share of every batch, DDP, the best epoch kept."""
    started = time.perf_counter()
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.set_num_threads(config["threads"])
    payload = ray.get(config["payload"])
    model: TwoTowerModel = payload["model"]
    settings = model.config
    torch.manual_seed(settings.seed + rank)  # id dropout: different draws on every worker
    device = ray.train.torch.get_device()
    data: EncodedRows = payload["data"].to(device)
    table: TowerInputs = payload["table"]
    table = TowerInputs(*(t.to(device) for t in (table.ids, table.cats, table.nums, table.seqs)))
    log_q = None if payload["log_q"] is None else payload["log_q"].to(device)
    valid: EncodedRows | None = None if payload["valid"] is None else payload["valid"].to(device)
    net = model.net.to(device)
    gather = gather_rows if world > 1 else None  # one worker: its batch is the whole batch
    loss_of = TowerLoss(net, settings, data, table, log_q, gather, rank)
    # a batch without negatives leaves the BCE bias out of the graph: DDP must expect that
    wrapped = ray.train.torch.prepare_model(
        loss_of, parallel_strategy_kwargs={"find_unused_parameters": True}
    )
    optimizer = torch.optim.Adam(
        net.parameters(), lr=settings.lr, weight_decay=settings.weight_decay
    )
    pos_rows, neg_rows = data.positives(), data.negatives()
    per_worker = math.ceil(settings.batch_size / world)
    steps = max(1, math.ceil(math.ceil(len(pos_rows) / world) / per_worker))
    share = math.ceil(math.ceil(len(neg_rows) / world) / steps)
    positives = _loader(pos_rows, per_worker)
    negatives = _loader(neg_rows, share) if len(neg_rows) else None
    empty = pos_rows[:0]
    history: list[dict[str, float]] = []
    epoch_seconds: list[float] = []
    best, best_state, examples = math.inf, None, 0
    for epoch in range(settings.epochs):
        epoch_started = time.perf_counter()
        net.train()
        for loader in (positives, negatives):
            if loader is not None and world > 1:
                loader.sampler.set_epoch(epoch)  # a new shuffle every epoch
        total, taken = 0.0, 0
        for pos, neg in zip_longest(positives, negatives or (), fillvalue=None):
            if pos is None:
                break
            pos_t, neg_t = pos[0], empty if neg is None else neg[0]
            loss = wrapped(pos_t, neg_t)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, taken = total + loss.item(), taken + 1
            examples += len(pos_t) + len(neg_t)
        net.eval()
        record = {"epoch": float(epoch), "train_loss": _global_mean(total, taken)}
        if rank == 0 and valid is not None and len(valid.positives()):
            record["valid_loss"] = validation_loss(net, settings, valid, table, log_q)
            if record["valid_loss"] < best:
                best, best_state = record["valid_loss"], copy.deepcopy(net.state_dict())
        history.append(record)
        epoch_seconds.append(time.perf_counter() - epoch_started)
        if rank == 0:
            logger.info("two-tower epoch %d on Ray Train: %s", epoch + 1, record)
    worker = {
        "rank": rank,
        "node": ray.get_runtime_context().get_node_id(),
        "pid": os.getpid(),
        "rows": len(positives.sampler),  # this worker's positives per epoch
        "negatives": 0 if negatives is None else len(negatives.sampler),
        "steps_per_epoch": steps,
        "examples": examples,
        "seconds": time.perf_counter() - started,
    }
    with tempfile.TemporaryDirectory() as folder:
        write_worker_record(folder, rank, worker)
        if rank == 0:
            weights = best_state if best_state is not None else net.state_dict()
            torch.save(
                {
                    "state_dict": {k: v.cpu() for k, v in weights.items()},
                    "history": history,
                    "epoch_seconds": epoch_seconds,
                },
                Path(folder, MODEL_FILE),
            )
        ray.train.report(
            {"rank": rank, "node": worker["node"]}, checkpoint=Checkpoint.from_directory(folder)
        )


@dataclass(frozen=True)
class TorchTraining:
    """A two-tower fit on Ray: the best epoch's weights, its history, what each worker did."""

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
        """Training examples (positives and negatives) seen over all workers and epochs."""
        return sum(int(w["examples"]) for w in self.workers)


def _loaded(checkpoint: Checkpoint) -> tuple[dict[str, Any], list[dict]]:
    with checkpoint.as_directory() as folder:
        saved = torch.load(Path(folder, MODEL_FILE), weights_only=True)
        records = worker_records(folder)
    return saved, records


def _on_cpu(side: TowerInputs) -> TowerInputs:
    return TowerInputs(*(t.cpu() for t in (side.ids, side.cats, side.nums, side.seqs)))


def train_two_tower_on_ray(
    model: TwoTowerModel,
    data: EncodedRows,
    table: TowerInputs,
    log_q: torch.Tensor | None,
    valid: EncodedRows | None,
    execution: Execution,
    layout: WorkerLayout | None = None,
) -> TorchTraining:
    """Train ``model.net`` (untrained, its encoders fitted) on ``data`` with TorchTrainer, the
    epoch with the lowest loss on ``valid`` kept; Ray must be connected
    (``runtime.shards.open_engine``). ``model`` itself is not changed: load the returned
    ``state_dict`` into it."""
    layout = layout or cluster_layout()
    started = time.perf_counter()
    cpu = torch.device("cpu")
    payload = ray.put(
        {
            "model": model,  # pickled through its state(): config, encoders, initial weights
            "data": data.to(cpu),
            "table": _on_cpu(table),
            "log_q": None if log_q is None else log_q.cpu(),
            "valid": None if valid is None else valid.to(cpu),
        }
    )
    storage = execution.storage / RUNS_FOLDER
    storage.mkdir(parents=True, exist_ok=True)
    trainer = TorchTrainer(
        two_tower_worker,
        train_loop_config={"payload": payload, "threads": layout.threads},
        torch_config=TorchConfig(backend=BACKEND),
        scaling_config=ScalingConfig(
            num_workers=layout.workers,
            use_gpu=False,
            resources_per_worker={"CPU": layout.cpus},
            placement_strategy="SPREAD",
        ),
        run_config=RunConfig(name=f"two-tower-{uuid.uuid4().hex[:12]}", storage_path=str(storage)),
    )
    result = trainer.fit()
    try:
        saved, records = _loaded(result.checkpoint)
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
