"""A written training set read by split: each split's rows alone, or a chunk at a time.

The model stage trains on train, early-stops and calibrates on validation and evaluates on test.
Loading the set whole and then cutting it held every row twice (the frame and its three
splits); reading each split from the file with an Arrow filter holds each row once. A split
that need not be held at all (the train split of a classifier, most of the set: LightGBM bins
it as it reads, ``assets.models.streamed_matrix``) is *streamed*: read again, a batch of the
file at a time, by each pass that needs it. What needs the set in its own order (the MLflow
dataset's digest and schema sample, the first rows as the logged model's input example, a
regression's ``last_value`` history) reads :attr:`SetSplits.table`, the set in file order a
chunk at a time, never the whole set in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from upath import UPath

from runtime.table_chunks import Chunks

MODEL_SPLITS = ("train", "validation", "test")
# rows of the file decoded at a time when a split or the set is read in chunks
BATCH_ROWS = 131_072


def read_split(path: UPath, split: str, split_column: str) -> pd.DataFrame:
    """The rows of one split of a written training set, in file order and with the set's dtypes:
    what a reader of the validation or test rows needs, without the train rows (most of a set)
    ever in memory. Row groups are filtered by Arrow, so only the split's rows are decoded."""
    with path.open("rb") as handle:
        table = pq.read_table(handle, filters=[(split_column, "==", split)])
    return table.to_pandas()


def file_chunks(
    path: UPath, split_column: str, split: str | None = None, batch_rows: int = BATCH_ROWS
) -> Chunks:
    """The set's file (only ``split``'s rows, when given) as :class:`Chunks`: a batch of the file
    at a time, each typed as the whole file reads (the pandas metadata travels with each batch),
    never an empty one (a file sorted by time has whole batches of one split)."""
    with path.open("rb") as handle:
        names = tuple(
            name
            for name in pq.ParquetFile(handle).schema_arrow.names
            if not name.startswith("__index_level_")  # a pandas index, not a column
        )

    def read(columns: list[str]) -> Iterator[pd.DataFrame]:
        wanted = columns if split is None or split_column in columns else [*columns, split_column]
        with path.open("rb") as handle:
            for batch in pq.ParquetFile(handle).iter_batches(batch_size=batch_rows, columns=wanted):
                if split is not None:
                    codes = pc.cast(batch.column(split_column), pa.string())
                    batch = batch.filter(pc.equal(codes, split))
                if batch.num_rows:  # a batch without the split's rows is no chunk
                    yield pa.Table.from_batches([batch]).to_pandas()[columns]

    return Chunks(names, read)


def _codes(column: pd.Series, name: str) -> tuple[dict[str, int], np.ndarray]:
    """Each split's code, the model's splits first, and every row's code; every row must have a
    split."""
    split = column.astype("category")
    labels = [str(c) for c in split.cat.categories]
    values = split.cat.codes.to_numpy()
    found = np.bincount(values + 1, minlength=len(labels) + 1)
    if found[0]:
        raise ValueError(f"training set: {found[0]} rows have no {name!r}")
    ranked = sorted(
        (i for i in range(len(labels)) if found[i + 1]),
        key=lambda i: (MODEL_SPLITS.index(labels[i]) if labels[i] in MODEL_SPLITS else 3, i),
    )
    return {labels[i]: i for i in ranked}, values


@dataclass(frozen=True)
class StreamedSplit:
    """A split not held in memory: its rows a chunk at a time, its size, and how to load it
    whole for a learner that needs a frame."""

    chunks: Chunks
    rows: int
    load: Callable[[], pd.DataFrame]


@dataclass(frozen=True)
class SetSplits:
    """The splits of a training set (held: a frame each, fresh index; streamed: chunks) and the
    whole set in its order as chunks (:attr:`table`)."""

    parts: dict[str, pd.DataFrame]
    streamed: dict[str, StreamedSplit]
    table: Chunks  # the whole set in its order, a chunk at a time
    rows: int

    @classmethod
    def read(cls, path: UPath, split_column: str, streamed: Sequence[str] = ()) -> SetSplits:
        """The splits of the set at ``path``: its split column read first (one byte a row), then
        each split's rows alone, those named in ``streamed`` left in the file."""
        with path.open("rb") as handle:
            column = pq.read_table(handle, columns=[split_column]).column(0).to_pandas()
        codes, values = _codes(column, split_column)
        sizes = np.bincount(values, minlength=max(codes.values()) + 1) if codes else []
        parts = {n: read_split(path, n, split_column) for n in codes if n not in streamed}
        lazy = {
            name: StreamedSplit(
                file_chunks(path, split_column, name),
                int(sizes[code]),
                lambda name=name: read_split(path, name, split_column),
            )
            for name, code in codes.items()
            if name in streamed
        }
        return cls(parts, lazy, file_chunks(path, split_column), len(column))

    @classmethod
    def of(cls, frame: pd.DataFrame, split_column: str, streamed: Sequence[str] = ()) -> SetSplits:
        """The splits of a set in memory (as the model stage's tests and benchmarks hold it);
        a split named in ``streamed`` is handed out in chunks all the same."""
        codes, values = _codes(frame[split_column], split_column)
        parts = {
            name: frame.iloc[np.flatnonzero(values == code)].reset_index(drop=True)
            for name, code in codes.items()
        }
        lazy = {
            name: StreamedSplit(Chunks.of(part), len(part), lambda part=part: part)
            for name, part in parts.items()
            if name in streamed
        }
        held = {name: part for name, part in parts.items() if name not in lazy}
        return cls(held, lazy, Chunks.of(frame), len(frame))

    @property
    def names(self) -> list[str]:
        """The splits present, the model's first."""
        found = [*self.parts, *self.streamed]
        return sorted(found, key=lambda n: MODEL_SPLITS.index(n) if n in MODEL_SPLITS else 3)

    def part(self, name: str) -> pd.DataFrame:
        """One split's rows (a streamed one loaded whole; empty, with the set's columns, when
        the set has none)."""
        if name in self.parts:
            return self.parts[name]
        if name in self.streamed:
            return self.streamed[name].load()
        held = next(iter(self.parts.values()), None)
        return held.iloc[:0] if held is not None else next(iter(self.table())).iloc[:0]

    def chunks(self, name: str) -> Chunks:
        """One split's rows a chunk at a time (a held split is one chunk)."""
        if name in self.streamed:
            return self.streamed[name].chunks
        return Chunks.of(self.part(name))

    def size(self, name: str) -> int:
        if name in self.streamed:
            return self.streamed[name].rows
        return len(self.parts.get(name, ()))

    @property
    def columns(self) -> pd.Index:
        return pd.Index(self.table.columns)

    def whole(self, columns: Sequence[str]) -> pd.DataFrame:
        """``columns`` of every row, in the set's order: a few columns of the whole set."""
        return self.table.frame(columns)

    def first_value(self, column: str) -> object | None:
        """The first non-null value of ``column`` in the set's order (None: all null)."""
        for chunk in self.table([column]):
            at = chunk[column].first_valid_index()
            if at is not None:
                return chunk[column].loc[at]
        return None

    def head(self, rows: int) -> pd.DataFrame:
        """The set's first ``rows`` rows, every column (a logged model's input example)."""
        taken: list[pd.DataFrame] = []
        for chunk in self.table():
            taken.append(chunk.iloc[: rows - sum(map(len, taken))])
            if sum(map(len, taken)) >= rows:
                break
        return pd.concat(taken, ignore_index=True) if taken else pd.DataFrame()
