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

The loader, the run, the checkpoint and the worker records are :mod:`runtime.ray_ddp`'s, shared
with the sequence retriever (``runtime.ray_sequence``); what is here is the two-tower's own.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from itertools import zip_longest

import ray.train.torch
import torch

from runtime.models.tower_loss import EncodedRows, TowerLoss, gather_rows, validation_loss
from runtime.models.two_tower import TowerInputs, TwoTowerModel
from runtime.ray_ddp import (
    TorchTraining,
    data_loader,
    fit_on_ray,
    global_mean,
    report_fit,
    start_worker,
    worker_record,
)
from runtime.ray_workers import WorkerLayout
from runtime.shards import Execution

logger = logging.getLogger(__name__)


def two_tower_worker(config: dict) -> None:
    """Ray Train's loop on each worker: its share of every batch, DDP, the best epoch kept."""
    started = time.perf_counter()
    start = start_worker(config)
    rank, world, device, payload = start.rank, start.world, start.device, start.payload
    model: TwoTowerModel = payload["model"]
    settings = model.config
    torch.manual_seed(settings.seed + rank)  # id dropout: different draws on every worker
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
    positives = data_loader(pos_rows, per_worker)
    negatives = data_loader(neg_rows, share) if len(neg_rows) else None
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
        record = {"epoch": float(epoch), "train_loss": global_mean(total, taken)}
        if rank == 0 and valid is not None and len(valid.positives()):
            record["valid_loss"] = validation_loss(net, settings, valid, table, log_q)
            if record["valid_loss"] < best:
                best, best_state = record["valid_loss"], copy.deepcopy(net.state_dict())
        history.append(record)
        epoch_seconds.append(time.perf_counter() - epoch_started)
        if rank == 0:
            logger.info("two-tower epoch %d on Ray Train: %s", epoch + 1, record)
    worker = worker_record(
        rank,
        started,
        rows=len(positives.sampler),  # this worker's positives per epoch
        negatives=0 if negatives is None else len(negatives.sampler),
        steps_per_epoch=steps,
        examples=examples,
    )
    weights = best_state if best_state is not None else net.state_dict()
    report_fit(config, rank, worker, weights, history, epoch_seconds)


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
    cpu = torch.device("cpu")
    payload = {
        "model": model,  # pickled through its state(): config, encoders, initial weights
        "data": data.to(cpu),
        "table": _on_cpu(table),
        "log_q": None if log_q is None else log_q.cpu(),
        "valid": None if valid is None else valid.to(cpu),
    }
    return fit_on_ray(two_tower_worker, payload, "two_tower", execution, layout)
