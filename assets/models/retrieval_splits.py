"""A retriever's splits as it reads them: train and validation left in the set's file.

A retriever (two-tower, sequence) trains on tensors, not on the training set's columns: the
two-tower encodes every train and validation row (``assets.models.two_tower``), the sequence
model only the positives with a history. So the model asset leaves train and validation in
the file (:func:`retriever_streamed_splits`) and each pass reads them a chunk at a time: the
encoder's statistics, the encoded rows, the items seen. What is held is the test split (every
test user's first row and future clicks are judged) and the train positives' few columns
(the seen items, popularity, the warm users' ids), as :class:`RetrievalSplits` gives them.
A set in memory (tests, a benchmark's baseline) is the same in one chunk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from assets.training.build import SPLIT
from assets.training.set_splits import MODEL_SPLITS, SetSplits
from configs.schema.usecase import UseCaseSpec
from runtime.table_chunks import Chunks

# the splits a retriever's asset leaves in the file (the test split is judged whole)
RETRIEVER_STREAMED = ("train", "validation")


@dataclass(frozen=True)
class RetrievalSplits:
    """Train and validation (frames, or chunks), the test split held, and the train rows with
    a positive label (only the columns the caller asked for)."""

    train: pd.DataFrame | Chunks
    valid: pd.DataFrame | Chunks
    test: pd.DataFrame
    positives: pd.DataFrame


def positive_rows(rows: pd.DataFrame | Chunks, label: str, columns: Sequence[str]) -> pd.DataFrame:
    """``columns`` of the rows whose ``label`` is positive, filtered as each chunk is read:
    ``rows[rows[label] > 0][columns]`` with a fresh index."""
    wanted = list(dict.fromkeys(columns))
    return Chunks.of(rows).where(label, _positive).frame(wanted)


def _positive(labels: pd.Series) -> np.ndarray:
    return labels.to_numpy(dtype=float) > 0


def _has_positive(rows: pd.DataFrame | Chunks, label: str) -> bool:
    return any(_positive(chunk[label]).any() for chunk in Chunks.of(rows)([label]))


def retrieval_splits(
    spec: UseCaseSpec,
    model: str,
    frame: pd.DataFrame | SetSplits,
    label: str,
    positive_columns: Sequence[str],
) -> RetrievalSplits:
    """The retriever's splits of a set (in memory, or read by split with train and validation
    streamed); each split must hold a positive ``label``, else a located error."""
    splits = frame if isinstance(frame, SetSplits) else SetSplits.of(frame, SPLIT)
    parts = {
        name: splits.chunks(name) if name in splits.streamed else splits.part(name)
        for name in MODEL_SPLITS
    }
    for name, part in parts.items():
        if not _has_positive(part, label):
            raise ValueError(f"{spec.name}: model.{model}: no positive {label!r} rows in {name}")
    train, valid, test = (parts[name] for name in MODEL_SPLITS)
    assert isinstance(test, pd.DataFrame)  # never streamed: judged whole
    return RetrievalSplits(
        train, valid, test, positive_rows(train, label, [*positive_columns, label])
    )


def _in_order(frame: pd.DataFrame | SetSplits) -> Chunks:
    """The whole set in its order, a chunk at a time."""
    return frame.table if isinstance(frame, SetSplits) else Chunks.of(frame)


def set_items(frame: pd.DataFrame | SetSplits, item_key: str) -> pd.DataFrame:
    """Every item the set mentions, in the order it first appears (a retriever's catalog when
    its entity has no table): one column read a chunk at a time."""
    pieces = [chunk.drop_duplicates() for chunk in _in_order(frame)([item_key])]
    return pd.concat(pieces, ignore_index=True).drop_duplicates(ignore_index=True)


def first_rows_per(frame: pd.DataFrame | SetSplits, key: str, rows: int) -> pd.DataFrame:
    """The set's first row of each of its first ``rows`` distinct ``key`` values, in its order:
    ``frame.drop_duplicates(key).head(rows)`` (a logged model's input example)."""
    taken: list[pd.DataFrame] = []
    seen: set = set()
    for chunk in _in_order(frame)():
        fresh = chunk.drop_duplicates(key)
        fresh = fresh[~fresh[key].isin(seen)].head(rows - len(seen))
        taken.append(fresh)
        seen.update(fresh[key].tolist())
        if len(seen) >= rows:
            break
    return pd.concat(taken, ignore_index=True) if taken else pd.DataFrame()
