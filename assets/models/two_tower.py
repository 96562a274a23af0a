"""Training of the two-tower retrieval model (the model itself: ``runtime.models.two_tower``).

* **Loss**: a sampled softmax over the positives of a batch (in-batch negatives), with the logQ
  correction of Yi et al. (RecSys 2019): each candidate's logit is reduced by the log of its
  sampling probability, estimated as its frequency among training positives (the batch stream
  draws every training positive once per epoch, so that frequency is the stream's), which stops
  the softmax from punishing popular items just for being frequent negatives. The explicit
  sampled negatives of the training set enter through a separate binary cross-entropy term on
  (user row, item) pairs, not as softmax columns: their sampling probabilities differ from the
  in-batch ones, and mixing them into one softmax would bias the logQ correction, whereas a
  BCE term uses them for exactly what they are (this user did not click this item then).
* **Ids** are randomly dropped to OOV during training (``id_dropout``) so the content path alone
  learns a useful item embedding: that is what makes a new item land next to similar items.
* **Epochs**: the default is 10 with the best validation epoch kept; on the feed set the
  validation loss bottoms out around the 7th epoch and rises after (over-fitting).
* **Progress**: one line per epoch (losses, seconds) to this module's ``logging`` logger, which
  the Dagster instance captures during a run (``resources.home``), so training stays a plain
  function and its progress still shows in the run's log.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from runtime.models.tower_inputs import FeatureEncoder, content_frame
from runtime.models.two_tower import (
    TowerInputs,
    TwoTowerConfig,
    TwoTowerModel,
    TwoTowerNet,
    device_for,
    embed,
)

logger = logging.getLogger(__name__)


def _batches(
    n_pos: int, n_neg: int, batch_size: int, rng: np.random.Generator
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Shuffled positives in batches, each with an equal share of the shuffled negatives."""
    pos, neg = rng.permutation(n_pos), rng.permutation(n_neg)
    steps = max(1, math.ceil(n_pos / batch_size))
    share = math.ceil(n_neg / steps) if n_neg else 0
    for step in range(steps):
        yield (
            pos[step * batch_size : (step + 1) * batch_size],
            neg[step * share : (step + 1) * share],
        )


def _softmax_loss(
    users: torch.Tensor,
    items: torch.Tensor,
    item_rows: torch.Tensor,
    log_q: torch.Tensor | None,
    temperature: float,
) -> torch.Tensor:
    """In-batch sampled softmax with logQ correction; repeats of the positive are masked."""
    logits = users @ items.T / temperature
    if log_q is not None:
        logits = logits - log_q[item_rows][None, :]
    same = item_rows[:, None] == item_rows[None, :]
    same.fill_diagonal_(False)
    logits = logits.masked_fill(same, float("-inf"))
    return F.cross_entropy(logits, torch.arange(len(users), device=users.device))


@dataclass
class _Data:
    """A training frame encoded: user inputs per row, item-table row per row, labels."""

    users: TowerInputs
    item_rows: torch.Tensor
    labels: torch.Tensor

    def positives(self) -> torch.Tensor:
        return torch.nonzero(self.labels > 0).flatten()

    def negatives(self) -> torch.Tensor:
        return torch.nonzero(self.labels <= 0).flatten()


def _encode_rows(
    model: TwoTowerModel, frame: pd.DataFrame, table_ids: pd.Index, label: str
) -> _Data:
    rows = table_ids.get_indexer(frame[model.item_key].to_numpy())
    return _Data(
        model.user_inputs(frame),
        torch.as_tensor(rows, device=model.device),
        torch.as_tensor(frame[label].to_numpy(dtype=np.float32), device=model.device),
    )


def _item_table(
    items: pd.DataFrame, frames: Sequence[pd.DataFrame], item_key: str, features: Sequence[str]
) -> pd.DataFrame:
    """Catalog content for every catalog item plus any training item missing from it."""
    content = content_frame(items, item_key, features).drop_duplicates(item_key, keep="last")
    seen = pd.concat([f[[item_key]] for f in frames]).drop_duplicates()
    extra = seen[~seen[item_key].isin(content[item_key])]
    return pd.concat([content, extra], ignore_index=True)


def _step(
    model: TwoTowerModel,
    data: _Data,
    table: TowerInputs,
    log_q: torch.Tensor | None,
    pos: torch.Tensor,
    neg: torch.Tensor,
    dropout: float,
) -> torch.Tensor:
    config, net = model.config, model.net
    rows = torch.cat([pos, neg])
    users = embed(net.user, data.users.take(rows), dropout)
    items = embed(net.item, table.take(data.item_rows[rows]), dropout)
    n = len(pos)
    loss = _softmax_loss(users[:n], items[:n], data.item_rows[pos], log_q, config.temperature)
    if config.bce_weight > 0 and len(neg):
        logits = (users * items).sum(dim=1) / config.temperature + net.bias
        loss = loss + config.bce_weight * F.binary_cross_entropy_with_logits(
            logits, data.labels[rows]
        )
    return loss


@torch.no_grad()
def _valid_loss(
    model: TwoTowerModel, data: _Data, table: TowerInputs, log_q: torch.Tensor | None
) -> float:
    pos = data.positives()
    losses = []
    empty = pos[:0]
    for start in range(0, len(pos), model.config.batch_size):
        batch = pos[start : start + model.config.batch_size]
        losses.append(float(_step(model, data, table, log_q, batch, empty, 0.0)) * len(batch))
    return sum(losses) / max(len(pos), 1)


def train_two_tower(
    train: pd.DataFrame,
    valid: pd.DataFrame | None,
    *,
    user_key: str,
    item_key: str,
    label: str,
    user_features: Sequence[str],
    item_features: Sequence[str],
    items: pd.DataFrame,
    config: TwoTowerConfig | None = None,
) -> TwoTowerModel:
    """Train on ``train`` (positives: ``label > 0``; other rows are explicit negatives).

    ``items`` is the catalog: ``item_key`` plus the item features' content columns. The epoch
    with the lowest validation softmax loss is kept (the last one without ``valid``).
    """
    config = config or TwoTowerConfig()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    device = device_for(config)
    positives = train[train[label] > 0]
    table_frame = _item_table(
        items, [train] + ([valid] if valid is not None else []), item_key, item_features
    )
    user_encoder = FeatureEncoder.fit(train, [c for c in user_features if c in train.columns])
    item_encoder = FeatureEncoder.fit(table_frame, [c for c in item_features if c in table_frame])
    user_ids = pd.unique(positives[user_key]).tolist()
    item_ids = pd.unique(positives[item_key]).tolist()
    net = TwoTowerNet(len(user_ids), len(item_ids), user_encoder, item_encoder, config).to(device)
    model = TwoTowerModel(
        config, user_key, item_key, user_ids, item_ids, user_encoder, item_encoder, net
    )
    table_ids = pd.Index(table_frame[item_key])
    table = model.item_inputs(table_frame)
    data = _encode_rows(model, train, table_ids, label)
    counts = np.bincount(data.item_rows[data.positives()].cpu().numpy(), minlength=len(table_ids))
    log_q = None
    if config.logq_correction:
        log_q = torch.as_tensor(np.log(np.maximum(counts, 1) / max(counts.sum(), 1)), device=device)
        log_q = log_q.float()
    valid_data = _encode_rows(model, valid, table_ids, label) if valid is not None else None
    _fit(model, data, table, log_q, valid_data, rng)
    model.net.eval()
    catalog = table_frame[table_frame[item_key].isin(items[item_key])]
    model.catalog_ids = catalog[item_key].to_numpy()
    model.catalog_vectors = model._vectors(net.item, model.item_inputs(catalog))
    model.popularity = (
        positives[item_key].value_counts().reindex(model.catalog_ids, fill_value=0).to_numpy()
    ).astype(np.float32)
    return model


def _log_epoch(record: dict[str, float], epochs: int, seconds: float) -> None:
    """``two-tower epoch 3/10: train loss 4.1234, validation loss 4.5678, 1.2 s``."""
    valid = f", validation loss {record['valid_loss']:.4f}" if "valid_loss" in record else ""
    logger.info(
        "two-tower epoch %d/%d: train loss %.4f%s, %.1f s",
        int(record["epoch"]) + 1,
        epochs,
        record["train_loss"],
        valid,
        seconds,
    )


def _fit(
    model: TwoTowerModel,
    data: _Data,
    table: TowerInputs,
    log_q: torch.Tensor | None,
    valid: _Data | None,
    rng: np.random.Generator,
) -> None:
    """The training loop; keeps the state of the epoch with the best validation loss."""
    config, net = model.config, model.net
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    pos_rows, neg_rows = data.positives(), data.negatives()
    best, best_state = math.inf, None
    started, examples = time.perf_counter(), 0
    epoch_started = started
    for epoch in range(config.epochs):
        net.train()
        total, steps = 0.0, 0
        for pos, neg in _batches(len(pos_rows), len(neg_rows), config.batch_size, rng):
            pos_t, neg_t = pos_rows[torch.as_tensor(pos)], neg_rows[torch.as_tensor(neg)]
            loss = _step(model, data, table, log_q, pos_t, neg_t, config.id_dropout)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, steps = total + loss.item(), steps + 1
            examples += len(pos) + len(neg)
        net.eval()
        record = {"epoch": float(epoch), "train_loss": total / max(steps, 1)}
        if valid is not None and len(valid.positives()):
            record["valid_loss"] = _valid_loss(model, valid, table, log_q)
            if record["valid_loss"] < best:
                best, best_state = record["valid_loss"], copy.deepcopy(net.state_dict())
        model.history.append(record)
        _log_epoch(record, config.epochs, time.perf_counter() - epoch_started)
        epoch_started = time.perf_counter()
    if best_state is not None:
        net.load_state_dict(best_state)
    model.train_seconds = time.perf_counter() - started
    model.examples_per_second = examples / max(model.train_seconds, 1e-9)
