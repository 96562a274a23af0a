"""A built FAISS index as served: the index, its id map and its tuned search parameter.

Building and tuning happen in ``assets.indexing.faiss_index``; this is what the index asset writes
and what a service (and the offline funnel) loads, so both search with the same parameters.
:class:`ExactSearch` answers the same calls by brute force, for a retriever version that has no
built index.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np

INDEX_FILE = "index.faiss"
IDS_FILE = "ids.npy"
META_FILE = "index.json"


@dataclass
class BuiltIndex:
    """A searchable index plus what was chosen at build time and how well it did.

    ``index`` is the outer FAISS index: an ``IndexIDMap2`` returning the item ids when they are
    integers, or the bare index returning positions into ``ids`` when they are strings (FAISS
    ids are int64 only).
    """

    index: faiss.Index
    ids: np.ndarray
    kind: str
    params: dict[str, Any]
    recall_at_k: float
    build_seconds: float
    k: int
    _inner: faiss.Index | None = field(default=None, repr=False)

    @property
    def n(self) -> int:
        return int(self.index.ntotal)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    @property
    def string_ids(self) -> bool:
        return not np.issubdtype(self.ids.dtype, np.integer)

    def search(self, queries: np.ndarray, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` item ids and inner-product scores per query, best first.

        Slots with no result are ``-1`` for integer ids and ``""`` for string ids.
        """
        scores, labels = self.index.search(as_vectors(queries), k or self.k)
        if not self.string_ids:
            return labels, scores
        found = self.ids[np.where(labels >= 0, labels, 0)]
        return np.where(labels >= 0, found, ""), scores

    def save(self, folder: str | Path) -> Path:
        """Write the FAISS index, the ids and a small JSON of the build choices to ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(folder / INDEX_FILE))
        np.save(folder / IDS_FILE, self.ids, allow_pickle=False)
        meta = {**self.metadata(), "k": self.k}
        (folder / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> BuiltIndex:
        """Read an index written by ``save``, with its tuned search parameter re-applied."""
        folder = Path(folder)
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        index = faiss.read_index(str(folder / INDEX_FILE))
        ids = np.load(folder / IDS_FILE, allow_pickle=False)
        inner = _unwrap(index)
        apply_search_params(inner, meta["kind"], meta["params"])
        return cls(
            index=index,
            ids=ids,
            kind=meta["kind"],
            params=meta["params"],
            recall_at_k=meta["recall_at_k"],
            build_seconds=meta["build_seconds"],
            k=meta["k"],
            _inner=inner,
        )

    def metadata(self) -> dict[str, Any]:
        """Plain values for Dagster asset metadata: what was built and how well it searches."""
        return {
            "kind": self.kind,
            "n": self.n,
            "dim": self.dim,
            "params": dict(self.params),
            "recall_at_k": round(self.recall_at_k, 4),
            "build_seconds": round(self.build_seconds, 3),
        }


def apply_search_params(inner: faiss.Index, kind: str, params: dict[str, Any]) -> None:
    """Set the tuned search parameter (IVF ``nprobe``, HNSW ``efSearch``) on the inner index."""
    if kind == "ivf":
        faiss.extract_index_ivf(inner).nprobe = int(params["nprobe"])
    elif kind == "hnsw":
        faiss.downcast_index(inner).hnsw.efSearch = int(params["efSearch"])


def _unwrap(index: faiss.Index) -> faiss.Index:
    """The index inside an ``IndexIDMap2`` (where search parameters live), else the index."""
    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexIDMap | faiss.IndexIDMap2):
        return faiss.downcast_index(index.index)
    return index


def as_vectors(vectors: np.ndarray) -> np.ndarray:
    """Queries or items as FAISS takes them: contiguous 2-D float32."""
    array = np.ascontiguousarray(vectors, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"vectors must be 2-D, got shape {array.shape}")
    return array


class ExactSearch:
    """Exact inner-product search over a retriever's own catalog vectors (an arm whose retriever
    version is not the one the FAISS index was built from)."""

    def __init__(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self.ids = np.asarray(ids)
        self.index = faiss.IndexFlatIP(vectors.shape[1])
        self.index.add(as_vectors(vectors))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, positions = self.index.search(as_vectors(queries), k)
        return np.where(positions >= 0, self.ids[np.maximum(positions, 0)], -1), scores
