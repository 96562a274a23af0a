"""A two-tower retrieval model: user (or query) tower and item (or document) tower.

Why this shape: retrieval has to score the whole catalog per request, so the two sides must be
embedded independently and compared with a dot product an index can search. Both towers end in
an L2-normalised vector, so the score is a cosine and every item is on the same scale.

* **User tower**: an id embedding (indexed over users with training positives; every other id,
  including unseen ones, maps to index 0, a fixed zero vector) plus the row's point-in-time user
  features (categoricals embedded, numerics standardised, list features such as the recent
  item ids mean-pooled as a history summary), through a small MLP.
* **Item tower**: an id embedding (indexed over items with training positives, index 0 = OOV =
  zero) plus the item's **content** features read from the catalog, not from the training rows:
  the tower must embed any catalog item, including one nobody has clicked yet, from what the
  catalog knows. Per-event statistics (popularity counts) are not content and are dropped
  unless the catalog carries them. Ids are randomly dropped to OOV during training
  (``id_dropout``) so the content path alone learns a useful embedding: that is what makes a
  new item (cold start) land next to similar items.
* **Loss**: a sampled softmax over the positives of a batch (in-batch negatives), with the logQ
  correction of Yi et al. (RecSys 2019): each candidate's logit is reduced by the log of its
  sampling probability, estimated as its frequency among training positives (the batch stream
  draws every training positive once per epoch, so that frequency is the stream's), which stops
  the softmax from punishing popular items just for being frequent negatives. The explicit
  sampled negatives of the training set enter through a separate binary cross-entropy term on
  (user row, item) pairs, not as softmax columns: their sampling probabilities differ from the
  in-batch ones, and mixing them into one softmax would bias the logQ correction, whereas a
  BCE term uses them for exactly what they are (this user did not click this item then).
* **Cold users** (no learned id and no history in their list features) are served the
  popularity ranking, see :meth:`TwoTowerModel.recommend`.
* **Epochs**: the default is 10 with the best validation epoch kept; on the feed set the
  validation loss bottoms out around the 7th epoch and rises after (over-fitting).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Hashable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from assets.models.tower_inputs import (
    OOV,
    FeatureEncoder,
    _content,
    _index,
    _is_sequence,
)


@dataclass(frozen=True)
class TwoTowerConfig:
    """Hyper-parameters; the defaults train a useful model on the feed set in about a minute."""

    embedding_dim: int = 32
    epochs: int = 10
    batch_size: int = 1024
    lr: float = 0.01
    temperature: float = 0.05
    seed: int = 0
    hidden_dim: int = 64
    category_dim: int = 8
    id_dropout: float = 0.2
    weight_decay: float = 0.0
    bce_weight: float = 0.5
    logq_correction: bool = True
    device: str | None = None  # None: cuda when available, else cpu


# ---------------------------------------------------------------------------------------------
# Feature encoding


# ---------------------------------------------------------------------------------------------
# Network


class _Tower(nn.Module):
    """id embedding + embedded categoricals + numerics -> MLP -> unit vector."""

    def __init__(self, n_ids: int, encoder: FeatureEncoder, config: TwoTowerConfig) -> None:
        super().__init__()
        dim, cat_dim = config.embedding_dim, config.category_dim
        self.ids = nn.Embedding(n_ids + 1, dim, padding_idx=OOV)
        nn.init.normal_(self.ids.weight, std=0.1)
        self.cats = nn.ModuleList(
            nn.Embedding(size + 1, cat_dim, padding_idx=OOV) for size in encoder.category_sizes
        )
        self.seqs = nn.ModuleList(
            nn.EmbeddingBag(size + 1, dim, mode="mean", padding_idx=OOV)
            for size in encoder.sequence_sizes
        )
        width = dim * (1 + len(self.seqs)) + cat_dim * len(self.cats) + encoder.numeric_width
        self.mlp = nn.Sequential(
            nn.Linear(width, config.hidden_dim), nn.ReLU(), nn.Linear(config.hidden_dim, dim)
        )
        with torch.no_grad():
            self.ids.weight[OOV].zero_()

    def forward(
        self, ids: torch.Tensor, cats: torch.Tensor, nums: torch.Tensor, seqs: torch.Tensor
    ) -> torch.Tensor:
        parts = [self.ids(ids), nums]
        parts += [embedding(cats[:, i]) for i, embedding in enumerate(self.cats)]
        parts += [bag(seqs[:, i]) for i, bag in enumerate(self.seqs)]
        return F.normalize(self.mlp(torch.cat(parts, dim=1)), dim=1)


class _Net(nn.Module):
    def __init__(
        self,
        n_users: int,
        n_items: int,
        user_encoder: FeatureEncoder,
        item_encoder: FeatureEncoder,
        config: TwoTowerConfig,
    ) -> None:
        super().__init__()
        self.user = _Tower(n_users, user_encoder, config)
        self.item = _Tower(n_items, item_encoder, config)
        self.bias = nn.Parameter(torch.zeros(()))  # of the BCE term on explicit negatives


@dataclass
class _Side:
    """Encoded inputs of one tower, one row per example (or catalog item)."""

    ids: torch.Tensor
    cats: torch.Tensor
    nums: torch.Tensor
    seqs: torch.Tensor

    @classmethod
    def build(
        cls,
        ids: np.ndarray,
        encoded: tuple[np.ndarray, np.ndarray, np.ndarray],
        device: torch.device,
    ) -> _Side:
        nums, cats, seqs = encoded
        return cls(*(torch.as_tensor(a, device=device) for a in (ids, cats, nums, seqs)))

    def take(self, rows: torch.Tensor) -> _Side:
        return _Side(self.ids[rows], self.cats[rows], self.nums[rows], self.seqs[rows])


def _embed(tower: _Tower, side: _Side, id_dropout: float = 0.0) -> torch.Tensor:
    ids = side.ids
    if id_dropout > 0:
        drop = torch.rand(ids.shape, device=ids.device) < id_dropout
        ids = ids.masked_fill(drop, OOV)
    return tower(ids, side.cats, side.nums, side.seqs)


# ---------------------------------------------------------------------------------------------
# The model


class TwoTowerModel:
    """A trained two-tower model: encoders, network, catalog embeddings and popularity."""

    def __init__(
        self,
        config: TwoTowerConfig,
        user_key: str,
        item_key: str,
        user_ids: list,
        item_ids: list,
        user_encoder: FeatureEncoder,
        item_encoder: FeatureEncoder,
        net: _Net,
    ) -> None:
        self.config = config
        self.user_key = user_key
        self.item_key = item_key
        self.user_ids = list(user_ids)  # users with training positives: the "warm" users
        self.item_ids = list(item_ids)
        self.user_encoder = user_encoder
        self.item_encoder = item_encoder
        self.net = net.eval()
        self.catalog_ids: np.ndarray = np.array([])
        self.catalog_vectors: np.ndarray = np.zeros((0, config.embedding_dim), np.float32)
        self.popularity: np.ndarray = np.array([])  # training clicks per catalog item
        self.history: list[dict[str, float]] = []
        self.train_seconds = 0.0
        self.examples_per_second = 0.0

    @property
    def device(self) -> torch.device:
        return self.net.bias.device

    @property
    def user_columns(self) -> list[str]:
        """The request columns the query tower reads: the user key and its features."""
        encoder = self.user_encoder
        return [self.user_key, *encoder.numeric, *encoder.categorical, *encoder.sequence]

    def _user_side(self, frame: pd.DataFrame) -> _Side:
        ids = _index(pd.Index(self.user_ids), frame[self.user_key])
        return _Side.build(ids, self.user_encoder.transform(frame), self.device)

    def _item_side(self, content: pd.DataFrame) -> _Side:
        ids = _index(pd.Index(self.item_ids), content[self.item_key])
        return _Side.build(ids, self.item_encoder.transform(content), self.device)

    @torch.no_grad()
    def _vectors(self, tower: _Tower, side: _Side, chunk: int = 65536) -> np.ndarray:
        out = [
            _embed(tower, side.take(torch.arange(s, min(s + chunk, len(side.ids)))))
            for s in range(0, len(side.ids), chunk)
        ]
        if not out:
            return np.zeros((0, self.config.embedding_dim), dtype=np.float32)
        return torch.cat(out).float().cpu().numpy()

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """The served function: query-tower embeddings of request rows (for MLflow's pyfunc)."""
        return self.user_embeddings(frame)

    def user_embeddings(self, frame: pd.DataFrame) -> np.ndarray:
        """One unit vector per row of ``frame`` (user key + user features), float32."""
        return self._vectors(self.net.user, self._user_side(frame))

    def user_vectors(self, frame: pd.DataFrame, warm_only: bool = True) -> dict[Hashable, Any]:
        """``{user: vector}`` from each user's last row; by default only warm users.

        Leaving cold users out (see :meth:`is_warm`) lets :func:`evaluate_retrieval` rank them
        by popularity, the same rule :meth:`recommend` serves them with.
        """
        last = frame.drop_duplicates(self.user_key, keep="last")
        if warm_only:
            last = last[self.is_warm(last)]
        return dict(zip(last[self.user_key].tolist(), self.user_embeddings(last), strict=True))

    def item_embeddings(self, items: pd.DataFrame | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, unit vectors float32)`` of ``items`` (the catalog seen in training if None).

        ``items`` holds the item key and the content columns (feature names or the catalog's
        source names); an id never seen in training is embedded from its content alone.
        """
        if items is None:
            return self.catalog_ids, self.catalog_vectors
        features = self.item_encoder.numeric + self.item_encoder.categorical
        content = _content(items, self.item_key, features)
        for column in set(features) - set(content.columns):
            content[column] = None  # a missing content column reads as missing values
        return content[self.item_key].to_numpy(), self._vectors(
            self.net.item, self._item_side(content)
        )

    def recommend(
        self,
        user_rows: pd.DataFrame,
        k: int = 10,
        exclude: Mapping[Hashable, set] | None = None,
    ) -> dict[Hashable, list]:
        """Top-``k`` catalog items per user (the last row per user), minus ``exclude[user]``.

        Rule (:meth:`is_warm`): a user with a learned id or a non-empty history feature is
        ranked by the model's cosine score; a cold user (unknown id and no history) gets the
        popularity ranking (most training clicks first), because their tower input is only the
        OOV id plus a few demographic features.
        """
        exclude = exclude or {}
        last = user_rows.drop_duplicates(self.user_key, keep="last")
        warm = self.user_vectors(last, warm_only=True)
        popular = np.argsort(-self.popularity, kind="stable")
        out: dict[Hashable, list] = {}
        for user in last[self.user_key].tolist():
            if user in warm:
                order = np.argsort(-(self.catalog_vectors @ warm[user]), kind="stable")
            else:
                order = popular
            banned = exclude.get(user, set())
            ranked = (item for item in self.catalog_ids[order].tolist() if item not in banned)
            out[user] = [item for _, item in zip(range(k), ranked, strict=False)]
        return out

    def is_warm(self, user_rows: pd.DataFrame) -> np.ndarray:
        """Per row: has a learned id (training positives) or a non-empty history (list) feature.

        The rest are cold: their tower input carries no behaviour, so they get popularity.
        """
        warm = pd.Index(self.user_ids).get_indexer(user_rows[self.user_key].to_numpy()) >= 0
        for column in self.user_encoder.sequence:
            if column in user_rows.columns:
                lengths = user_rows[column].map(lambda v: len(v) if _is_sequence(v) else 0)
                warm |= lengths.to_numpy(dtype=int) > 0
        return warm

    # -- persistence ------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Everything needed to rebuild the model, as tensors and plain Python values."""
        return {
            "config": asdict(self.config),
            "user_key": self.user_key,
            "item_key": self.item_key,
            "user_ids": list(self.user_ids),
            "item_ids": list(self.item_ids),
            "user_encoder": self.user_encoder.to_dict(),
            "item_encoder": self.item_encoder.to_dict(),
            "state_dict": {k: v.cpu() for k, v in self.net.state_dict().items()},
            "catalog_ids": self.catalog_ids.tolist(),
            "catalog_vectors": torch.as_tensor(self.catalog_vectors),
            "popularity": torch.as_tensor(self.popularity),
            "history": self.history,
            "train_seconds": self.train_seconds,
            "examples_per_second": self.examples_per_second,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], device: str | None = None) -> TwoTowerModel:
        config = TwoTowerConfig(**state["config"])
        user_encoder = FeatureEncoder(**state["user_encoder"])
        item_encoder = FeatureEncoder(**state["item_encoder"])
        net = _Net(
            len(state["user_ids"]), len(state["item_ids"]), user_encoder, item_encoder, config
        )
        net.load_state_dict(state["state_dict"])
        net.to(_device(config, device))
        model = cls(
            config,
            state["user_key"],
            state["item_key"],
            state["user_ids"],
            state["item_ids"],
            user_encoder,
            item_encoder,
            net,
        )
        model.catalog_ids = np.asarray(state["catalog_ids"])
        model.catalog_vectors = state["catalog_vectors"].numpy()
        model.popularity = state["popularity"].numpy()
        model.history = list(state["history"])
        model.train_seconds = float(state.get("train_seconds", 0.0))
        model.examples_per_second = float(state.get("examples_per_second", 0.0))
        return model

    def save(self, path: str | Path) -> None:
        torch.save(self.state(), Path(path))

    @classmethod
    def load(cls, path: str | Path, device: str | None = None) -> TwoTowerModel:
        return cls.from_state(torch.load(Path(path), weights_only=True), device)

    def __getstate__(self) -> dict[str, Any]:
        return self.state()

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(TwoTowerModel.from_state(state).__dict__)


# ---------------------------------------------------------------------------------------------
# Training


def _device(config: TwoTowerConfig, override: str | None = None) -> torch.device:
    name = override or config.device
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


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

    users: _Side
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
        model._user_side(frame),
        torch.as_tensor(rows, device=model.device),
        torch.as_tensor(frame[label].to_numpy(dtype=np.float32), device=model.device),
    )


def _item_table(
    items: pd.DataFrame, frames: Sequence[pd.DataFrame], item_key: str, features: Sequence[str]
) -> pd.DataFrame:
    """Catalog content for every catalog item plus any training item missing from it."""
    content = _content(items, item_key, features).drop_duplicates(item_key, keep="last")
    seen = pd.concat([f[[item_key]] for f in frames]).drop_duplicates()
    extra = seen[~seen[item_key].isin(content[item_key])]
    return pd.concat([content, extra], ignore_index=True)


def _step(
    model: TwoTowerModel,
    data: _Data,
    table: _Side,
    log_q: torch.Tensor | None,
    pos: torch.Tensor,
    neg: torch.Tensor,
    dropout: float,
) -> torch.Tensor:
    config, net = model.config, model.net
    rows = torch.cat([pos, neg])
    users = _embed(net.user, data.users.take(rows), dropout)
    items = _embed(net.item, table.take(data.item_rows[rows]), dropout)
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
    model: TwoTowerModel, data: _Data, table: _Side, log_q: torch.Tensor | None
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
    device = _device(config)
    positives = train[train[label] > 0]
    table_frame = _item_table(
        items, [train] + ([valid] if valid is not None else []), item_key, item_features
    )
    user_encoder = FeatureEncoder.fit(train, [c for c in user_features if c in train.columns])
    item_encoder = FeatureEncoder.fit(table_frame, [c for c in item_features if c in table_frame])
    user_ids = pd.unique(positives[user_key]).tolist()
    item_ids = pd.unique(positives[item_key]).tolist()
    net = _Net(len(user_ids), len(item_ids), user_encoder, item_encoder, config).to(device)
    model = TwoTowerModel(
        config, user_key, item_key, user_ids, item_ids, user_encoder, item_encoder, net
    )
    table_ids = pd.Index(table_frame[item_key])
    table = model._item_side(table_frame)
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
    model.catalog_vectors = model._vectors(net.item, model._item_side(catalog))
    model.popularity = (
        positives[item_key].value_counts().reindex(model.catalog_ids, fill_value=0).to_numpy()
    ).astype(np.float32)
    return model


def _fit(
    model: TwoTowerModel,
    data: _Data,
    table: _Side,
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
    if best_state is not None:
        net.load_state_dict(best_state)
    model.train_seconds = time.perf_counter() - started
    model.examples_per_second = examples / max(model.train_seconds, 1e-9)
