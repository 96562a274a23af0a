"""A next-item retriever as served (training: ``assets.models.sequence``): an encoder over a
user's recent item ids whose output is searched against the same items' embeddings.

Why this shape: the user vector is computed from what the user did last, read at request time
from the online store (a ``last_n`` aggregate of the item key), so it needs no learned user id:
a user who signed up an hour ago with three items in the history is as servable as an old one,
and the vector moves with every new event without retraining. Items share one embedding table
between the encoder's input and the retrieval output (the encoder reads item vectors and
answers with one in the same space), so the catalog's vectors are that table's rows, L2
normalised, and the same FAISS index, recall checks and serving path as the two-tower apply.

* **Items**: an id embedding plus one embedding per content column of the catalog (category,
  brand), so items that share content are close from the start. On the shipped feed, where the
  history is the last 20 *impressions* (clicks are not in it), content took the GRU's test
  recall@20 from 0.124 (ids only, below popularity's 0.130) to 0.16.

* **History**: the list is oldest first (as the ``last_n`` aggregate stores it); the last
  ``max_len`` ids are kept and left-padded with the OOV slot 0, so the newest item is always at
  the last position, which is where the encoder's output is read.
* **Encoder**: a GRU (its last hidden state) or a small transformer (learned positions, padding
  masked, the last position's output), then a linear map and L2 normalisation.
* **Cold users** (no known id in the history) get the popularity ranking, as with the
  two-tower: the encoder has nothing to read.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from runtime.models.saved_retriever import SavedRetriever
from runtime.models.tower_inputs import OOV, is_sequence, lookup_index

ENCODERS = ("gru", "transformer")


@dataclass(frozen=True)
class SequenceConfig:
    """Hyper-parameters; the defaults train on the feed set in seconds on a CPU."""

    encoder: str = "gru"
    max_len: int = 20
    embedding_dim: int = 32
    epochs: int = 10
    batch_size: int = 256
    lr: float = 0.005
    temperature: float = 0.1  # feed: 0.05 gave recall@20 0.158, 0.1 0.164, 0.2 0.161
    negatives: str = "in_batch"  # in_batch | sampled
    num_sampled: int = 256
    logq_correction: bool = True
    heads: int = 2
    layers: int = 1
    dropout: float = 0.1
    weight_decay: float = 0.0
    id_dropout: float = 0.0  # share of item ids dropped (content only) per training step
    seed: int = 0
    device: str | None = None  # None: cuda when available, else cpu

    def __post_init__(self) -> None:
        if self.encoder not in ENCODERS:
            raise ValueError(f"sequence encoder must be one of {ENCODERS}, got {self.encoder!r}")
        if self.negatives not in ("in_batch", "sampled"):
            raise ValueError(f"negatives must be in_batch or sampled, got {self.negatives!r}")


class SequenceNet(nn.Module):
    """Item table (id + content embeddings) + GRU or transformer over left-padded histories.

    An item's embedding is its id's plus one per content column (category, brand: ``codes``,
    a buffer of each item row's value codes), so items that share content start close and an
    item seen too rarely to learn its id still has a useful vector.
    """

    def __init__(
        self, n_items: int, config: SequenceConfig, content_sizes: Sequence[int] = ()
    ) -> None:
        super().__init__()
        dim = config.embedding_dim
        self.kind = config.encoder
        self.items = nn.Embedding(n_items + 1, dim, padding_idx=OOV)
        nn.init.normal_(self.items.weight, std=0.1)
        with torch.no_grad():
            self.items.weight[OOV].zero_()
        self.content = nn.ModuleList(
            nn.Embedding(size + 1, dim, padding_idx=OOV) for size in content_sizes
        )
        for embedding in self.content:
            nn.init.normal_(embedding.weight, std=0.1)
            with torch.no_grad():
                embedding.weight[OOV].zero_()
        codes = torch.zeros((n_items + 1, len(content_sizes)), dtype=torch.long)
        self.register_buffer("codes", codes)
        if self.kind == "gru":
            self.encoder: nn.Module = nn.GRU(dim, dim, batch_first=True)
        else:
            self.positions = nn.Embedding(config.max_len, dim)
            nn.init.normal_(self.positions.weight, std=0.02)
            layer = nn.TransformerEncoderLayer(
                dim, config.heads, 2 * dim, config.dropout, batch_first=True
            )
            self.encoder = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.out = nn.Linear(dim, dim)
        self.id_dropout = config.id_dropout

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        """``history`` int64 [n, max_len] (left-padded with OOV) -> unit vectors [n, dim]."""
        x = F.embedding(history, self.item_table())
        if self.kind == "gru":
            states, _ = self.encoder(x)
        else:
            x = x + self.positions.weight[None, -history.shape[1] :]
            padding = history == OOV
            padding[:, -1] = False  # an empty history still has a row to read (never served)
            states = self.encoder(x, src_key_padding_mask=padding)
        return F.normalize(self.out(states[:, -1]), dim=1)

    def item_table(self) -> torch.Tensor:
        """Every item row's embedding: id plus content (row 0, OOV, is zero)."""
        table = self.items.weight
        if self.training and self.id_dropout > 0:
            keep = torch.rand(len(table), 1, device=table.device) >= self.id_dropout
            table = table * keep
        for column, embedding in enumerate(self.content):
            table = table + embedding(self.codes[:, column])
        return table

    def item_vectors(self) -> torch.Tensor:
        """Every item's unit vector (row 0, OOV, stays zero)."""
        return F.normalize(self.item_table(), dim=1)


def encode_histories(histories: Sequence[object], vocabulary: pd.Index, max_len: int) -> np.ndarray:
    """int64 [n, max_len]: the last ``max_len`` known ids of each list, newest last, left-padded.

    Ids outside ``vocabulary`` are dropped (they carry no learned vector); a missing or empty
    history is all OOV.
    """
    out = np.zeros((len(histories), max_len), dtype=np.int64)
    for row, history in enumerate(histories):
        if not is_sequence(history) or len(history) == 0:
            continue
        codes = vocabulary.get_indexer(np.asarray(history)) + 1
        codes = codes[codes > OOV][-max_len:]
        if len(codes):
            out[row, max_len - len(codes) :] = codes
    return out


def device_for(config: SequenceConfig, override: str | None = None) -> torch.device:
    """The configured device, else CUDA when present, else the CPU."""
    name = override or config.device
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


class SequenceModel(SavedRetriever):
    """A trained next-item retriever: item vocabulary, network, catalog vectors, popularity.

    It answers the calls the index asset, the bundle and the served funnel make of a retriever
    (``user_columns``, ``is_warm``, ``user_embeddings``, ``user_vectors``, ``item_embeddings``,
    ``catalog_ids``/``catalog_vectors``, ``popularity``), so both retriever kinds share them.
    """

    def __init__(
        self,
        config: SequenceConfig,
        user_key: str,
        item_key: str,
        history_column: str,
        item_ids: list,
        net: SequenceNet,
        content: dict[str, list[str]] | None = None,
    ) -> None:
        self.config = config
        self.user_key = user_key
        self.item_key = item_key
        self.history_column = history_column
        self.item_ids = list(item_ids)  # the vocabulary: position + 1 is the embedding row
        self.content = dict(content or {})  # content column -> its values (code = position + 1)
        self.net = net.eval()
        self.init_catalog(config.embedding_dim)

    @property
    def device(self) -> torch.device:
        return self.net.out.weight.device

    @property
    def user_columns(self) -> list[str]:
        """The request columns the encoder reads: the user key and the recent-items list."""
        return [self.user_key, self.history_column]

    def encode(self, histories: Sequence[object]) -> np.ndarray:
        """The encoder's input rows for ``histories`` (see :func:`encode_histories`)."""
        vocabulary = lookup_index(self, "items", self.item_ids)
        return encode_histories(histories, vocabulary, self.config.max_len)

    def _histories(self, frame: pd.DataFrame) -> list:
        if self.history_column not in frame.columns:
            return [None] * len(frame)
        return frame[self.history_column].tolist()

    def is_warm(self, user_rows: pd.DataFrame) -> np.ndarray:
        """Per row: the history holds at least one id the model has a vector for."""
        return (self.encode(self._histories(user_rows)) != OOV).any(axis=1)

    @torch.no_grad()
    def embed_codes(self, codes: np.ndarray, chunk: int = 8192) -> np.ndarray:
        """Unit vectors float32 [n, dim] of encoded histories."""
        self.net.eval()
        out = [
            self.net(torch.as_tensor(codes[s : s + chunk], device=self.device))
            for s in range(0, len(codes), chunk)
        ]
        if not out:
            return np.zeros((0, self.config.embedding_dim), dtype=np.float32)
        return torch.cat(out).float().cpu().numpy()

    def user_embeddings(self, frame: pd.DataFrame) -> np.ndarray:
        """One unit vector per row of ``frame`` (its recent-items list), float32."""
        return self.embed_codes(self.encode(self._histories(frame)))

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """The served function: the encoder's vectors of request rows (for MLflow's pyfunc)."""
        return self.user_embeddings(frame)

    def user_vectors(self, frame: pd.DataFrame, warm_only: bool = True) -> dict[Hashable, Any]:
        """``{user: vector}`` from each user's last row; by default only users with a history.

        Leaving the others out lets the evaluation rank them by popularity, as serving does.
        """
        last = frame.drop_duplicates(self.user_key, keep="last")
        if warm_only:
            last = last[self.is_warm(last)]
        return dict(zip(last[self.user_key].tolist(), self.user_embeddings(last), strict=True))

    @torch.no_grad()
    def item_embeddings(self, items: pd.DataFrame | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, unit vectors float32)`` of ``items`` (the catalog if None); an id the model
        never saw has no vector and gets zeros (it is found by no query)."""
        if items is None:
            return self.catalog_ids, self.catalog_vectors
        ids = items[self.item_key].to_numpy()
        rows = lookup_index(self, "items", self.item_ids).get_indexer(ids) + 1
        table = self.net.item_vectors().float().cpu().numpy()
        return ids, table[np.maximum(rows, OOV)].astype(np.float32)

    # -- persistence ------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Everything needed to rebuild the model, as tensors and plain Python values."""
        return {
            "config": asdict(self.config),
            "user_key": self.user_key,
            "item_key": self.item_key,
            "history_column": self.history_column,
            "item_ids": list(self.item_ids),
            "content": self.content,
            "state_dict": {k: v.cpu() for k, v in self.net.state_dict().items()},
            **self.catalog_state(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], device: str | None = None) -> SequenceModel:
        config = SequenceConfig(**state["config"])
        content = state.get("content", {})
        net = SequenceNet(len(state["item_ids"]), config, [len(v) for v in content.values()])
        net.load_state_dict(state["state_dict"])
        net.to(device_for(config, device))
        model = cls(
            config,
            state["user_key"],
            state["item_key"],
            state["history_column"],
            state["item_ids"],
            net,
            content,
        )
        return model.restore_catalog(state)
