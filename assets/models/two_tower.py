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
* **Where**: here, or, inside a model asset whose execution is Ray (``execution`` section or
  ``RAY_ADDRESS``, ``runtime.training_engine``), data-parallel on the cluster through Ray
  Train's TorchTrainer (``runtime.ray_torch``: DDP over gloo, one CPU worker per node). Both
  paths fit the encoders and vocabularies here and optimise the same loss
  (``runtime.models.tower_loss``); the weights of the best epoch come back into the same
  ``TwoTowerModel``, so evaluation, the bundle and serving do not know where it trained.
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

import numpy as np
import pandas as pd
import torch

from assets.models.retrieval_splits import positive_rows
from runtime.models.tower_inputs import FeatureEncoder, content_frame
from runtime.models.tower_loss import EncodedRows, TowerLoss, validation_loss
from runtime.models.two_tower import (
    TowerInputs,
    TwoTowerConfig,
    TwoTowerModel,
    TwoTowerNet,
    device_for,
)
from runtime.table_chunks import Chunks
from runtime.training_engine import TrainingEngine, current_training_engine

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


def _encode_rows(
    model: TwoTowerModel, rows: pd.DataFrame | Chunks, table_ids: pd.Index, label: str
) -> EncodedRows:
    """A split's rows encoded (a frame, or chunks: each encoded as it is read, so the split's
    raw columns are never held, only its tensors)."""
    columns = list(dict.fromkeys([*model.user_columns, model.item_key, label]))
    pieces = [rows] if isinstance(rows, pd.DataFrame) else rows(columns)
    return EncodedRows.concat(
        [
            EncodedRows(
                model.user_inputs(piece),
                torch.as_tensor(
                    table_ids.get_indexer(piece[model.item_key].to_numpy()), device=model.device
                ),
                torch.as_tensor(piece[label].to_numpy(dtype=np.float32), device=model.device),
            )
            for piece in pieces
        ]
    )


def _item_table(
    items: pd.DataFrame,
    splits: Sequence[pd.DataFrame | Chunks],
    item_key: str,
    features: Sequence[str],
) -> pd.DataFrame:
    """Catalog content for every catalog item plus any training item missing from it."""
    content = content_frame(items, item_key, features).drop_duplicates(item_key, keep="last")
    seen = pd.concat(
        [c.drop_duplicates() for s in splits for c in Chunks.of(s)([item_key])]
    ).drop_duplicates()
    extra = seen[~seen[item_key].isin(content[item_key])]
    return pd.concat([content, extra], ignore_index=True)


def train_two_tower(
    train: pd.DataFrame | Chunks,
    valid: pd.DataFrame | Chunks | None,
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
    with the lowest validation softmax loss is kept (the last one without ``valid``). ``train``
    and ``valid`` may be chunks (splits left in the set's file): the encoder's statistics, the
    vocabularies and the encoded rows are then read a chunk at a time, and the model is the
    frames' one, weight for weight.
    """
    config = config or TwoTowerConfig()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    device = device_for(config)
    positives = positive_rows(train, label, [user_key, item_key])
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
    engine = current_training_engine()
    if engine is not None:
        _fit_distributed(engine, model, data, table, log_q, valid_data)
    else:
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
    data: EncodedRows,
    table: TowerInputs,
    log_q: torch.Tensor | None,
    valid: EncodedRows | None,
    rng: np.random.Generator,
) -> None:
    """The training loop; keeps the state of the epoch with the best validation loss."""
    config, net = model.config, model.net
    loss_of = TowerLoss(net, config, data, table, log_q)
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
            loss = loss_of(pos_t, neg_t)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, steps = total + loss.item(), steps + 1
            examples += len(pos) + len(neg)
        net.eval()
        record = {"epoch": float(epoch), "train_loss": total / max(steps, 1)}
        if valid is not None and len(valid.positives()):
            record["valid_loss"] = validation_loss(net, config, valid, table, log_q)
            if record["valid_loss"] < best:
                best, best_state = record["valid_loss"], copy.deepcopy(net.state_dict())
        model.history.append(record)
        _log_epoch(record, config.epochs, time.perf_counter() - epoch_started)
        epoch_started = time.perf_counter()
    if best_state is not None:
        net.load_state_dict(best_state)
    model.train_seconds = time.perf_counter() - started
    model.examples_per_second = examples / max(model.train_seconds, 1e-9)


def _fit_distributed(
    engine: TrainingEngine,
    model: TwoTowerModel,
    data: EncodedRows,
    table: TowerInputs,
    log_q: torch.Tensor | None,
    valid: EncodedRows | None,
) -> None:
    """The same fit through Ray Train's TorchTrainer on the engine's cluster (DDP, gloo, CPU):
    the best epoch's weights come back into ``model.net``, the fit's record into ``engine``."""
    from runtime.ray_torch import train_two_tower_on_ray  # only a Ray run imports Ray

    fit = train_two_tower_on_ray(model, data, table, log_q, valid, engine.execution)
    engine.fits.append(fit)
    model.net.load_state_dict(fit.state_dict)
    model.history = list(fit.history)
    model.train_seconds = fit.seconds
    model.examples_per_second = fit.examples / max(fit.seconds, 1e-9)
    for record, seconds in zip(fit.history, fit.epoch_seconds, strict=True):
        _log_epoch(record, model.config.epochs, seconds)
    logger.info(
        "two-tower trained on Ray Train: %d workers on %d node(s), positives per worker %s, %.1f s",
        fit.layout.workers,
        len(fit.nodes),
        "/".join(str(w["rows"]) for w in fit.workers),
        fit.seconds,
    )
