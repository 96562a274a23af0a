"""A written training set read by split: each split's rows alone, and where each row sits.

The model stage trains on train, early-stops and calibrates on validation and evaluates on test.
Loading the set whole and then cutting it held every row twice (the frame and its three
splits); reading each split from the file with an Arrow filter holds each row once.
:class:`SetSplits` keeps, beside the splits, every row's place in the file, so what needs the set
in its own order (the MLflow dataset's digest and schema sample, the first rows as the logged
model's input example, a regression's ``last_value`` history) gets exactly the whole set's
answer from the splits, never the whole set in memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from upath import UPath

MODEL_SPLITS = ("train", "validation", "test")


def read_split(path: UPath, split: str, split_column: str) -> pd.DataFrame:
    """The rows of one split of a written training set, in file order and with the set's dtypes:
    what a reader of the validation or test rows needs, without the train rows (most of a set)
    ever in memory. Row groups are filtered by Arrow, so only the split's rows are decoded."""
    with path.open("rb") as handle:
        table = pq.read_table(handle, filters=[(split_column, "==", split)])
    return table.to_pandas()


def _places(column: pd.Series, name: str) -> dict[str, np.ndarray]:
    """Each split's row positions, the model's splits first; every row must have a split."""
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
    return {labels[i]: np.flatnonzero(values == i) for i in ranked}


@dataclass(frozen=True)
class SetSplits:
    """Every split of a training set (fresh index each) and each row's place in the set."""

    parts: dict[str, pd.DataFrame]
    places: dict[str, np.ndarray]  # per split: the positions of its rows in the whole set
    rows: int

    @classmethod
    def read(cls, path: UPath, split_column: str) -> SetSplits:
        """The splits of the set at ``path``: its split column read first (one byte a row), then
        each split's rows alone."""
        with path.open("rb") as handle:
            column = pq.read_table(handle, columns=[split_column]).column(0).to_pandas()
        places = _places(column, split_column)
        parts = {name: read_split(path, name, split_column) for name in places}
        return cls(parts, places, len(column))

    @classmethod
    def of(cls, frame: pd.DataFrame, split_column: str) -> SetSplits:
        """The splits of a set in memory (as the model stage's tests and benchmarks hold it)."""
        places = _places(frame[split_column], split_column)
        parts = {name: frame.iloc[at].reset_index(drop=True) for name, at in places.items()}
        return cls(parts, places, len(frame))

    def part(self, name: str) -> pd.DataFrame:
        """One split's rows (empty, with the set's columns, when the set has none)."""
        if name in self.parts:
            return self.parts[name]
        return next(iter(self.parts.values())).iloc[:0] if self.parts else pd.DataFrame()

    @property
    def columns(self) -> pd.Index:
        return self.part(next(iter(self.parts), "")).columns

    def order(self) -> np.ndarray:
        """Where each row of the splits, concatenated in ``parts`` order, sits in the set."""
        if not self.places:
            return np.empty(0, dtype=np.int64)
        return np.concatenate([self.places[name] for name in self.parts])

    def whole(self, columns: Sequence[str]) -> pd.DataFrame:
        """``columns`` of every row, in the set's order: a few columns of the whole set."""
        joined = pd.concat([part[list(columns)] for part in self.parts.values()], ignore_index=True)
        at = np.empty(self.rows, dtype=np.int64)
        at[self.order()] = np.arange(self.rows)
        return joined.iloc[at].reset_index(drop=True)

    def first_value(self, column: str) -> object | None:
        """The first non-null value of ``column`` in the set's order (None: all null)."""
        found: tuple[int, object] | None = None
        for name, part in self.parts.items():
            at = part[column].first_valid_index()
            if at is not None and (found is None or self.places[name][at] < found[0]):
                found = (int(self.places[name][at]), part[column].iloc[at])
        return None if found is None else found[1]

    def head(self, rows: int) -> pd.DataFrame:
        """The set's first ``rows`` rows, every column (a logged model's input example)."""
        picked = [
            part.iloc[np.flatnonzero(self.places[name] < rows)] for name, part in self.parts.items()
        ]
        where = np.concatenate([self.places[name][self.places[name] < rows] for name in self.parts])
        return pd.concat(picked, ignore_index=True).iloc[np.argsort(where)].reset_index(drop=True)
