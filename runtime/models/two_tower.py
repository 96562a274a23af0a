"""A two-tower retrieval model as served (training: ``assets.models.two_tower``): user (or query) tower and item (or document) tower.

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

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from runtime.models.saved_retriever import SavedRetriever
from runtime.models.tower_inputs import (
    OOV,
    FeatureEncoder,
    content_frame,
    is_sequence,
    lookup_index,
    positions_in,
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


class Tower(nn.Module):
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


class TwoTowerNet(nn.Module):
    def __init__(
        self,
        n_users: int,
        n_items: int,
        user_encoder: FeatureEncoder,
        item_encoder: FeatureEncoder,
        config: TwoTowerConfig,
    ) -> None:
        super().__init__()
        self.user = Tower(n_users, user_encoder, config)
        self.item = Tower(n_items, item_encoder, config)
        self.bias = nn.Parameter(torch.zeros(()))  # of the BCE term on explicit negatives

    def forward(
        self, users: TowerInputs, items: TowerInputs, id_dropout: float = 0.0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Unit vectors of a batch's user rows and item rows (training: ids dropped to OOV at
        rate ``id_dropout``); one call, so a DDP-wrapped module sees the whole step."""
        return embed(self.user, users, id_dropout), embed(self.item, items, id_dropout)


@dataclass
class TowerInputs:
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
    ) -> TowerInputs:
        nums, cats, seqs = encoded
        return cls(*(torch.as_tensor(a, device=device) for a in (ids, cats, nums, seqs)))

    def take(self, rows: torch.Tensor) -> TowerInputs:
        return TowerInputs(self.ids[rows], self.cats[rows], self.nums[rows], self.seqs[rows])

    @classmethod
    def concat(cls, parts: Sequence[TowerInputs]) -> TowerInputs:
        """The rows of ``parts`` one after the other (one part: itself, not a copy)."""
        if len(parts) == 1:
            return parts[0]
        return cls(
            *(
                torch.cat([getattr(p, name) for p in parts])
                for name in ("ids", "cats", "nums", "seqs")
            )
        )


def embed(tower: Tower, side: TowerInputs, id_dropout: float = 0.0) -> torch.Tensor:
    ids = side.ids
    if id_dropout > 0:
        drop = torch.rand(ids.shape, device=ids.device) < id_dropout
        ids = ids.masked_fill(drop, OOV)
    return tower(ids, side.cats, side.nums, side.seqs)


# ---------------------------------------------------------------------------------------------
# The model


class TwoTowerModel(SavedRetriever):
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
        net: TwoTowerNet,
    ) -> None:
        self.config = config
        self.user_key = user_key
        self.item_key = item_key
        self.user_ids = list(user_ids)  # users with training positives: the "warm" users
        self.item_ids = list(item_ids)
        self.user_encoder = user_encoder
        self.item_encoder = item_encoder
        self.net = net.eval()
        self.init_catalog(config.embedding_dim)

    @property
    def device(self) -> torch.device:
        return self.net.bias.device

    @property
    def user_columns(self) -> list[str]:
        """The request columns the query tower reads: the user key and its features."""
        encoder = self.user_encoder
        return [self.user_key, *encoder.numeric, *encoder.categorical, *encoder.sequence]

    def user_inputs(self, frame: pd.DataFrame) -> TowerInputs:
        ids = positions_in(lookup_index(self, "users", self.user_ids), frame[self.user_key])
        return TowerInputs.build(ids, self.user_encoder.transform(frame), self.device)

    def item_inputs(self, content: pd.DataFrame) -> TowerInputs:
        ids = positions_in(lookup_index(self, "items", self.item_ids), content[self.item_key])
        return TowerInputs.build(ids, self.item_encoder.transform(content), self.device)

    @torch.no_grad()
    def _vectors(self, tower: Tower, side: TowerInputs, chunk: int = 65536) -> np.ndarray:
        out = [
            embed(tower, side.take(torch.arange(s, min(s + chunk, len(side.ids)))))
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
        return self._vectors(self.net.user, self.user_inputs(frame))

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
        content = content_frame(items, self.item_key, features)
        for column in set(features) - set(content.columns):
            content[column] = None  # a missing content column reads as missing values
        return content[self.item_key].to_numpy(), self._vectors(
            self.net.item, self.item_inputs(content)
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
        users = lookup_index(self, "users", self.user_ids)
        warm = users.get_indexer(user_rows[self.user_key].to_numpy()) >= 0
        for column in self.user_encoder.sequence:
            if column in user_rows.columns:
                lengths = user_rows[column].map(lambda v: len(v) if is_sequence(v) else 0)
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
            **self.catalog_state(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], device: str | None = None) -> TwoTowerModel:
        config = TwoTowerConfig(**state["config"])
        user_encoder = FeatureEncoder(**state["user_encoder"])
        item_encoder = FeatureEncoder(**state["item_encoder"])
        net = TwoTowerNet(
            len(state["user_ids"]), len(state["item_ids"]), user_encoder, item_encoder, config
        )
        net.load_state_dict(state["state_dict"])
        net.to(device_for(config, device))
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
        return model.restore_catalog(state)


# ---------------------------------------------------------------------------------------------
# Training


def device_for(config: TwoTowerConfig, override: str | None = None) -> torch.device:
    """The configured device, else CUDA when present, else the CPU."""
    name = override or config.device
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))
