"""The sequence retriever trained data-parallel by Ray Train's TorchTrainer (DDP, gloo, CPU).

Imported only when a sequence retriever is trained while the use case's execution is Ray
(``runtime.training_engine``), so a local run never imports Ray. The run, the loader, the
checkpoint and the worker records are :mod:`runtime.ray_ddp`'s, as for the two-tower
(``runtime.ray_torch``); what is here is the sequence model's own loop:

- **Encoded once, on the driver.** The vocabulary, the content codes, the encoded histories,
  targets and logQ are made from the whole training set exactly as a local fit makes them
  (``assets.models.sequence``), so the model that comes back has the same item rows and
  catalog as a local one. They go to the workers through the object store with the untrained
  model (its initial weights; DDP broadcasts rank 0's anyway).
- **Examples dealt by ``DistributedSampler``.** A worker takes ``batch_size / workers``
  examples a step, so an epoch has the local fit's number of optimizer steps over the same
  global batch size.
- **One objective.** :class:`runtime.models.sequence_loss.SequenceLoss` wrapped in DDP: with
  in-batch negatives each worker's histories are scored against the targets of all workers
  (their item vectors all-gathered with their gradients), so the loss is the one a single
  process with the global batch computes; sampled negatives come from a generator seeded alike
  on every worker, so a step's workers share one draw, as the single process's batch does.
- **The best epoch back as a state dict.** Rank 0 scores the held-out examples after every
  epoch (every worker holds identical weights after a DDP step), keeps the best epoch's weights
  and reports them in the run's checkpoint; the caller loads them into its own
  ``SequenceModel``, the class the bundle, MLflow and serving load.
"""

from __future__ import annotations

import copy
import logging
import math
import time

import ray.train.torch
import torch

from runtime.models.sequence_encoder import SequenceModel
from runtime.models.sequence_loss import SequenceLoss, held_out_loss
from runtime.models.tower_loss import gather_rows
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

HeldOut = tuple[torch.Tensor, torch.Tensor]  # encoded histories, target rows


def sequence_worker(config: dict) -> None:
    """Ray Train's loop on each worker: its share of every batch, DDP, the best epoch kept."""
    started = time.perf_counter()
    start = start_worker(config)
    rank, world, device, payload = start.rank, start.world, start.device, start.payload
    model: SequenceModel = payload["model"]
    settings = model.config
    torch.manual_seed(settings.seed + rank)  # dropout, id dropout: different draws per worker
    # sampled negatives: the same draw on every worker each step; the held-out loss (rank 0
    # only) draws from its own generator so the workers' draws stay in step
    generator = torch.Generator().manual_seed(settings.seed)
    scoring = torch.Generator().manual_seed(settings.seed + 1)
    codes, targets = payload["codes"].to(device), payload["targets"].to(device)
    log_q = None if payload["log_q"] is None else payload["log_q"].to(device)
    held: HeldOut | None = payload["held_out"]
    if held is not None:
        held = (held[0].to(device), held[1].to(device))
    net = model.net.to(device)
    in_batch = settings.negatives == "in_batch"
    gather = gather_rows if world > 1 and in_batch else None  # one worker: its batch is all
    loss_of = SequenceLoss(net, settings, codes, targets, log_q, generator, gather, rank)
    # the content codes buffer is the same everywhere and never changes: nothing to broadcast
    wrapped = ray.train.torch.prepare_model(
        loss_of, parallel_strategy_kwargs={"broadcast_buffers": False}
    )
    optimizer = torch.optim.Adam(
        net.parameters(), lr=settings.lr, weight_decay=settings.weight_decay
    )
    examples_loader = data_loader(
        torch.arange(len(targets), device=device), math.ceil(settings.batch_size / world)
    )
    history: list[dict[str, float]] = []
    epoch_seconds: list[float] = []
    best, best_state, examples = math.inf, None, 0
    for epoch in range(settings.epochs):
        epoch_started = time.perf_counter()
        net.train()
        if world > 1:
            examples_loader.sampler.set_epoch(epoch)  # a new shuffle every epoch
        total, taken = 0.0, 0
        for (rows,) in examples_loader:
            loss = wrapped(rows)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, taken, examples = total + loss.item(), taken + 1, examples + len(rows)
        net.eval()
        record = {"epoch": float(epoch), "train_loss": global_mean(total, taken)}
        if rank == 0 and held is not None and len(held[1]):
            record["valid_loss"] = held_out_loss(net, settings, *held, log_q, scoring)
            if record["valid_loss"] < best:
                best, best_state = record["valid_loss"], copy.deepcopy(net.state_dict())
        history.append(record)
        epoch_seconds.append(time.perf_counter() - epoch_started)
        if rank == 0:
            logger.info("sequence epoch %d on Ray Train: %s", epoch + 1, record)
    worker = worker_record(
        rank,
        started,
        rows=len(examples_loader.sampler),  # this worker's examples per epoch
        steps_per_epoch=len(examples_loader),
        examples=examples,
    )
    weights = best_state if best_state is not None else net.state_dict()
    report_fit(config, rank, worker, weights, history, epoch_seconds)


def train_sequence_on_ray(
    model: SequenceModel,
    codes: torch.Tensor,
    targets: torch.Tensor,
    held_out: HeldOut | None,
    log_q: torch.Tensor | None,
    execution: Execution,
    layout: WorkerLayout | None = None,
) -> TorchTraining:
    """Train ``model.net`` (untrained, its vocabulary and content codes set) on the encoded
    examples with TorchTrainer, the epoch with the lowest loss on ``held_out`` kept; Ray must be
    connected (``runtime.shards.open_engine``). ``model`` itself is not changed: load the
    returned ``state_dict`` into it."""
    payload = {
        "model": model,  # pickled through its state(): config, vocabulary, initial weights
        "codes": codes.cpu(),
        "targets": targets.cpu(),
        "held_out": None if held_out is None else (held_out[0].cpu(), held_out[1].cpu()),
        "log_q": None if log_q is None else log_q.cpu(),
    }
    return fit_on_ray(sequence_worker, payload, "sequence", execution, layout)
