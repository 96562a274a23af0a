"""A table read in chunks, again for each pass: how a stage reads what must not be held whole.

The split plan counts the log a file at a time, and the drift report fits its bins on the
training period a file at a time; both read their rows more than once (the split's windows,
then the rows per window; the bins' sample, then the rows per bin). :class:`Chunks` is that
re-readable table: its columns, and a ``read`` that gives the frames in order, projected to the
columns asked for. A frame in memory is the same thing in one chunk (:meth:`Chunks.of`), so the
whole-frame and chunked paths are one piece of code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd


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
