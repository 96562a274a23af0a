"""One LightGBM booster trained data-parallel by Ray Train's LightGBM trainer on a Ray cluster.

Imported only when a model is trained while the use case's execution is Ray
(``runtime.training_engine``), so a local run never imports Ray.

How the work is cut, and why:

- **Rows, not copies.** The training rows are dealt into one shard per worker (every n-th row,
  so each shard spans the whole time range) and each worker builds its ``lgb.Dataset`` from its
  own shard (``tree_learner: data_parallel``, ``pre_partition: true``); LightGBM's network
  parameters come from Ray (``ray.train.lightgbm.get_network_params``), so the workers sum their
  histograms into the same trees. A ranker's query groups are dealt whole, never cut, which is
  what LambdaRank needs (a query's documents must sit on one machine).
- **The validation rows whole on every worker.** Early stopping is decided by each worker's own
  ``lgb.train`` loop; with identical trees and identical validation rows every worker computes
  the same metric and stops at the same iteration. Sharding the validation rows would let the
  workers stop at different iterations and leave one waiting on the network for the others.
- **Frames through the object store.** The learners have already built the feature matrix in
  memory (with its pandas categories); ``ray.put`` hands each worker its slice with those dtypes
  intact, which a round trip through Ray Data's Arrow blocks would not guarantee.
- **The booster back as LightGBM wrote it.** Rank 0 saves the booster as ``lgb.train`` returns it
  (cut back to the best iteration) into the run's final checkpoint under the execution's
  storage; every worker adds a small record (node, rows, seconds) to the same checkpoint, which
  Ray merges into one folder. The driver loads the booster with ``RayTrainReportCallback``'s
  own loader and restores ``best_iteration`` and ``best_score``, so callers see the object a
  local ``lgb.train`` returns.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
import uuid
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import ray
import ray.train
from ray.train import Checkpoint, RunConfig, ScalingConfig
from ray.train.lightgbm import LightGBMTrainer, RayTrainReportCallback, get_network_params

from runtime.ray_workers import (
    RUNS_FOLDER,
    WorkerLayout,
    cluster_layout,
    worker_records,
    write_worker_record,
)
from runtime.shards import Execution

MODEL_FILE = RayTrainReportCallback.CHECKPOINT_NAME  # what RayTrainReportCallback.get_model reads
LOG_EVERY = 25  # iterations between progress lines in a worker's log

logger = logging.getLogger(__name__)


def shard_rows(rows: int, workers: int, groups: np.ndarray | None = None) -> list[np.ndarray]:
    """The row indices of each worker's shard: every ``workers``-th row (or query group).

    Strided rather than contiguous because each worker bins some of the features from its own
    rows (LightGBM's distributed dataset construction): the rows are in time order, and a shard
    of only the first days would bin a 30-day aggregate from its warm-up values. Striding gives
    every shard the whole time range, so its bins match the global ones closely. With ``groups``
    (a ranker's group sizes, in row order) whole groups are dealt out, never a part of one.
    """
    if groups is None:
        if rows < workers:
            raise ValueError(f"{rows} training rows cannot feed {workers} Ray Train workers")
        return [np.arange(worker, rows, workers) for worker in range(workers)]
    if len(groups) < workers:
        raise ValueError(
            f"{len(groups)} query groups cannot feed {workers} Ray Train workers whole"
        )
    owner = np.repeat(np.arange(len(groups)) % workers, groups)
    return [np.flatnonzero(owner == worker) for worker in range(workers)]


def row_count(dataset: lgb.Dataset) -> int:
    """Rows of an ``lgb.Dataset`` not constructed yet (``num_data`` needs it constructed)."""
    return len(dataset.label if dataset.label is not None else dataset.data)


def _take(value: Any, rows: np.ndarray) -> Any:
    if value is None:
        return None
    if hasattr(value, "iloc"):
        return value.iloc[rows]
    return np.asarray(value)[rows]


def dataset_parts(dataset: lgb.Dataset, shards: Sequence[np.ndarray]) -> list[dict]:
    """The raw rows of an unconstructed ``lgb.Dataset`` for each shard of row indices: data,
    label, weight, init score and (for a ranker, whose shards hold whole groups) group sizes."""
    if dataset.data is None or isinstance(dataset.data, str | Path):
        raise ValueError(
            "training on Ray needs the feature matrix in memory (lgb.Dataset built from a frame"
            " or an array, free_raw_data=False)"
        )
    groups = None if dataset.group is None else np.asarray(dataset.group, dtype=np.int64)
    group_of_row = None if groups is None else np.repeat(np.arange(len(groups)), groups)
    parts = []
    for rows in shards:
        part_groups = None
        if group_of_row is not None:
            part_groups = groups[np.unique(group_of_row[rows])]
        parts.append(
            {
                "data": _take(dataset.data, rows),
                "label": _take(dataset.label, rows),
                "weight": _take(dataset.weight, rows),
                "init_score": _take(dataset.init_score, rows),
                "group": part_groups,
            }
        )
    return parts


def _dataset(part: dict, options: dict, reference: lgb.Dataset | None = None) -> lgb.Dataset:
    return lgb.Dataset(
        part["data"],
        label=part["label"],
        weight=part["weight"],
        init_score=part["init_score"],
        group=part["group"],
        reference=reference,
        **options,
    )


class _WorkerProgress:
    """Iterations run, and a line in the worker's log every :data:`LOG_EVERY` of them."""

    order = 10

    def __init__(self) -> None:
        self.iterations = 0

    def __call__(self, env: Any) -> None:
        self.iterations = env.iteration + 1
        if env.evaluation_result_list and self.iterations % LOG_EVERY == 0:
            scores = ", ".join(f"{r[0]} {r[1]}={r[2]:.5g}" for r in env.evaluation_result_list)
            logger.info("LightGBM iteration %d on this worker: %s", self.iterations, scores)


def train_worker(config: dict) -> None:
    """Ray Train's loop on each worker: its shard, the whole validation set, one ``lgb.train``."""
    started = time.perf_counter()
    context = ray.train.get_context()
    rank = context.get_world_rank()
    shard = ray.get(config["shards"][rank])
    validation = ray.get(config["validation"])
    params = {**config["params"], **get_network_params()}
    train_set = _dataset(shard, config["dataset_options"])
    valid_set = _dataset(validation, config["dataset_options"], reference=train_set)
    progress = _WorkerProgress()
    booster = lgb.train(
        params,
        train_set,
        valid_sets=[valid_set],
        valid_names=["validation"],
        callbacks=[progress],
    )
    record = {
        "rank": rank,
        "node": ray.get_runtime_context().get_node_id(),
        "pid": os.getpid(),
        "rows": len(shard["label"]),
        "iterations": progress.iterations,
        "best_iteration": booster.best_iteration,
        "best_score": {name: dict(scores) for name, scores in booster.best_score.items()},
        "seconds": time.perf_counter() - started,
    }
    with tempfile.TemporaryDirectory() as folder:
        write_worker_record(folder, rank, record)
        if rank == 0:
            booster.save_model(Path(folder, MODEL_FILE))  # as lgb.train returned it
        ray.train.report(
            {"rank": rank, "node": record["node"]}, checkpoint=Checkpoint.from_directory(folder)
        )
    booster.free_network()


@dataclass(frozen=True)
class RayTraining:
    """A booster trained on Ray and what each worker did (rank order)."""

    booster: lgb.Booster
    workers: list[dict]
    layout: WorkerLayout
    seconds: float

    @property
    def nodes(self) -> list[str]:
        return sorted({w["node"] for w in self.workers})


def _loaded(checkpoint: Checkpoint) -> tuple[lgb.Booster, list[dict]]:
    booster = RayTrainReportCallback.get_model(checkpoint, MODEL_FILE)
    with checkpoint.as_directory() as folder:
        records = worker_records(folder)
    first = records[0]
    booster.best_iteration = int(first["best_iteration"])
    best_score: defaultdict[str, OrderedDict] = defaultdict(OrderedDict)
    for name, scores in first["best_score"].items():
        best_score[name].update(scores)
    booster.best_score = best_score
    return booster, records


def train_on_ray(
    params: dict[str, Any],
    train_set: lgb.Dataset,
    valid_set: lgb.Dataset,
    execution: Execution,
    layout: WorkerLayout | None = None,
    on_error: Callable[[Exception], Exception | None] = lambda error: None,
) -> RayTraining:
    """Train ``params`` on ``train_set`` with Ray Train's LightGBM trainer, early-stopped on
    ``valid_set``; Ray must be connected (``runtime.shards.open_engine``).

    ``params`` are the learner's own; this adds the data-parallel learner, the worker's thread
    count and the network. ``on_error`` maps a worker's exception to the one to raise (the caller
    turns LightGBM's parameter errors into its own), or None to raise Ray's.
    """
    layout = layout or cluster_layout()
    started = time.perf_counter()
    groups = None if train_set.group is None else np.asarray(train_set.group)
    rows = shard_rows(row_count(train_set), layout.workers, groups)
    shards = [ray.put(part) for part in dataset_parts(train_set, rows)]
    validation = ray.put(dataset_parts(valid_set, [np.arange(row_count(valid_set))])[0])
    options = {
        "feature_name": train_set.feature_name,
        "categorical_feature": train_set.categorical_feature,
        "params": train_set.params,
        "free_raw_data": True,
    }
    storage = execution.storage / RUNS_FOLDER
    storage.mkdir(parents=True, exist_ok=True)
    trainer = LightGBMTrainer(
        train_worker,
        train_loop_config={
            "params": {
                "tree_learner": "data_parallel",  # unless the caller chose voting_parallel
                **params,
                "pre_partition": True,
                "num_threads": layout.threads,
            },
            "shards": shards,
            "validation": validation,
            "dataset_options": options,
        },
        scaling_config=ScalingConfig(
            num_workers=layout.workers,
            resources_per_worker={"CPU": layout.cpus},
            placement_strategy="SPREAD",
        ),
        run_config=RunConfig(name=f"lightgbm-{uuid.uuid4().hex[:12]}", storage_path=str(storage)),
    )
    try:
        result = trainer.fit()
    except ray.train.WorkerGroupError as error:
        for failure in error.worker_failures.values():
            mapped = on_error(failure)
            if mapped is not None:
                raise mapped from None
        raise
    try:
        booster, records = _loaded(result.checkpoint)
    finally:
        shutil.rmtree(result.path, ignore_errors=True)  # the booster is the caller's now
    return RayTraining(booster, records, layout, time.perf_counter() - started)
