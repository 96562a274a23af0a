"""A table read in chunks, again for each pass: how a stage reads what must not be held whole.

The split plan counts the log a file at a time, and the drift report fits its bins on the
training period a file at a time; both read their rows more than once (the split's windows,
then the rows per window; the bins' sample, then the rows per bin). :class:`Chunks` is that
re-readable table: its columns, and a ``read`` that gives the frames in order, projected to the
columns asked for. A frame in memory is the same thing in one chunk (:meth:`Chunks.of`), so the
whole-frame and chunked paths are one piece of code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

_RANK = "__chunks_rank"  # a row's place in a permuted table, kept beside it in its bucket file


@dataclass(frozen=True)
class Chunks:
    """A table read again for each pass, one frame at a time: its ``columns``, and ``read``
    giving the frames in order with only the columns asked for."""

    columns: tuple[str, ...]
    read: Callable[[list[str]], Iterable[pd.DataFrame]]

    def __call__(self, columns: Sequence[str] | None = None) -> Iterable[pd.DataFrame]:
        """The frames in order, with ``columns`` (default: all)."""
        return self.read(list(self.columns if columns is None else columns))

    @classmethod
    def of(cls, table: pd.DataFrame | Chunks) -> Chunks:
        """Chunks as they are, a frame in memory as one chunk."""
        if isinstance(table, Chunks):
            return table
        return cls(tuple(table.columns), lambda columns: (table[columns],))

    def select(self, columns: Sequence[str]) -> Chunks:
        """The same rows with only ``columns``: what a pass that copies the table copies."""
        kept = tuple(columns)
        return Chunks(kept, lambda wanted: self.read(list(wanted)))

    def where(self, column: str, keep: Callable[[pd.Series], np.ndarray]) -> Chunks:
        """The rows whose ``column`` passes ``keep`` (a mask of a chunk's values), filtered as
        each chunk is read: ``frame[keep(frame[column])]``, never held."""

        def read(columns: list[str]) -> Iterator[pd.DataFrame]:
            for chunk in self(list(dict.fromkeys([*columns, column]))):
                kept = chunk[np.asarray(keep(chunk[column]), dtype=bool)]
                if len(kept):
                    yield kept[columns]

        return Chunks(self.columns, read)

    def frame(self, columns: Sequence[str]) -> pd.DataFrame:
        """``columns`` of every row as one frame (fresh index): a few columns of the table."""
        pieces = list(self(columns))
        if not pieces:
            return pd.DataFrame(columns=list(columns))
        return pd.concat(pieces, ignore_index=True)

    def rows_at(self, positions: np.ndarray, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """The rows at ``positions`` (ascending, in the table's order), fresh index: what
        ``frame.iloc[positions]`` gives, a chunk at a time."""
        picked, start = [], 0
        for chunk in self(columns):
            stop = start + len(chunk)
            lo, hi = np.searchsorted(positions, (start, stop))
            if hi > lo:
                picked.append(chunk.iloc[positions[lo:hi] - start])
            start = stop
        if not picked:
            return pd.DataFrame(columns=list(self.columns if columns is None else columns))
        return pd.concat(picked, ignore_index=True)


def permuted(table: Chunks, order: np.ndarray, folder: Path, bucket_rows: int) -> Chunks:
    """The rows of ``table`` in ``order`` (row ``i`` is ``table``'s row ``order[i]``), as
    ``frame.iloc[order]`` gives them, a bucket of ``bucket_rows`` at a time: never the table
    whole. One pass deals each chunk's rows into the bucket their new place falls in (a Parquet
    file per chunk and bucket under ``folder``, which must outlive the result); a read of the
    result reads a bucket's files and puts its rows in their places. An external sort whose key
    is already computed: the caller's ``order``, so the order is exactly the one it chose."""
    folder.mkdir(parents=True, exist_ok=True)
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order), dtype=np.int64)
    buckets: list[list[Path]] = [[] for _ in range(-(-len(order) // bucket_rows))]
    start = 0
    for number, chunk in enumerate(table()):
        ranks = rank[start : start + len(chunk)]
        start += len(chunk)
        if not len(chunk):
            continue
        bucket = ranks // bucket_rows
        by_bucket = np.argsort(bucket, kind="stable")
        present, first = np.unique(bucket[by_bucket], return_index=True)
        for b, rows in zip(present, np.split(by_bucket, first[1:]), strict=True):
            path = folder / f"{b}-{number}.parquet"
            chunk.iloc[rows].assign(**{_RANK: ranks[rows]}).to_parquet(path, index=False)
            buckets[b].append(path)
    if start != len(order):
        raise ValueError(f"an order of {len(order)} rows for a table of {start}")

    def read(columns: list[str]) -> Iterator[pd.DataFrame]:
        for b, paths in enumerate(buckets):
            pieces = [pd.read_parquet(path, columns=[*columns, _RANK]) for path in paths]
            rows = pd.concat(pieces, ignore_index=True)
            place = np.empty(len(rows), dtype=np.int64)
            place[rows[_RANK].to_numpy() - b * bucket_rows] = np.arange(len(rows))
            yield rows.iloc[place].drop(columns=_RANK).reset_index(drop=True)

    return Chunks(table.columns, read)
