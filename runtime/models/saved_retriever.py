"""What every embedding retriever (two-tower, sequence) keeps besides its network, and how it is
saved: the catalog's ids and vectors, popularity for cold users, the training history, and
persistence through a plain ``state()`` dict of tensors and Python values.

One place for it, so the two retrievers save, load and pickle (MLflow's pyfunc pickles the
served model) the same way, and a field added here reaches both.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch


class SavedRetriever(ABC):
    """Catalog attributes and persistence; subclasses give ``state()`` (their own fields plus
    :meth:`catalog_state`) and ``from_state`` (which calls :meth:`restore_catalog`)."""

    def init_catalog(self, embedding_dim: int) -> None:
        """Empty catalog and history, for a model not fitted yet."""
        self.catalog_ids: np.ndarray = np.array([])
        self.catalog_vectors: np.ndarray = np.zeros((0, embedding_dim), np.float32)
        self.popularity: np.ndarray = np.array([])  # training positives per catalog item
        self.history: list[dict[str, float]] = []
        self.train_seconds = 0.0
        self.examples_per_second = 0.0

    @abstractmethod
    def state(self) -> dict[str, Any]:
        """Everything needed to rebuild the model, as tensors and plain Python values."""

    @classmethod
    @abstractmethod
    def from_state(cls, state: dict[str, Any], device: str | None = None) -> Self:
        """The model :meth:`state` describes, on ``device`` (default: the configured one)."""

    def catalog_state(self) -> dict[str, Any]:
        """The catalog part of :meth:`state`."""
        return {
            "catalog_ids": self.catalog_ids.tolist(),
            "catalog_vectors": torch.as_tensor(self.catalog_vectors),
            "popularity": torch.as_tensor(self.popularity),
            "history": self.history,
            "train_seconds": self.train_seconds,
            "examples_per_second": self.examples_per_second,
        }

    def restore_catalog(self, state: dict[str, Any]) -> Self:
        """Set the catalog part from a :meth:`state` dict; returns the model."""
        self.catalog_ids = np.asarray(state["catalog_ids"])
        self.catalog_vectors = state["catalog_vectors"].numpy()
        self.popularity = state["popularity"].numpy()
        self.history = list(state["history"])
        self.train_seconds = float(state.get("train_seconds", 0.0))
        self.examples_per_second = float(state.get("examples_per_second", 0.0))
        return self

    def save(self, path: str | Path) -> None:
        torch.save(self.state(), Path(path))

    @classmethod
    def load(cls, path: str | Path, device: str | None = None) -> Self:
        return cls.from_state(torch.load(Path(path), weights_only=True), device)

    def __getstate__(self) -> dict[str, Any]:
        return self.state()

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(type(self).from_state(state).__dict__)
