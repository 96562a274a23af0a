"""A training set's label rows on disk, in label order: what a sharded build holds instead of them.

A sharded build computes the label rows (and the sampled negatives) shard by shard, and DuckDB
sorts the shards' outputs into label order in one Parquet file, out of core
(:mod:`assets.training.sharded_labels`). Everything downstream reads that file a batch at a
time: the point-in-time join cuts its few join columns into shards, and the set is finished a
chunk of label rows at a time. So the label rows of the whole log are never in memory.

DuckDB writes the file without pandas' metadata, so a batch read alone comes back in Arrow's
default types (a category as text, a column without nulls as numpy's type). Each batch is cast
to the dtypes the whole label frame has (``dtypes``: found from the shards' outputs as
``pandas.concat`` of all of them would type them), so a chunk is typed as the one-pass frame.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from runtime.shards import nullable_integers


@dataclass(frozen=True)
class LabelFile:
    """Label rows in label order in ``path``; ``dtypes``: the whole frame's, column by column."""

    path: Path
    rows: int
    dtypes: pd.Series

    @property
    def columns(self) -> list[str]:
        return [str(c) for c in self.dtypes.index]

    @property
    def empty(self) -> bool:
        return self.rows == 0

    def batches(
        self, batch_rows: int, columns: Sequence[str] | None = None
    ) -> Iterator[pd.DataFrame]:
        """The rows (of ``columns``, all by default) in label order, ``batch_rows`` or fewer at
        a time, each indexed by its rows' positions and typed as the whole frame; one empty
        frame when there are no rows."""
        names = self.columns if columns is None else list(columns)
        dtypes = self.dtypes[names].to_dict()
        start = 0
        with pq.ParquetFile(self.path) as file:
            for batch in file.iter_batches(batch_size=batch_rows, columns=names):
                frame = _typed(batch, dtypes)
                frame.index = pd.RangeIndex(start, start + len(frame))
                start += len(frame)
                yield frame
            if start == 0:
                yield _typed(file.schema_arrow.empty_table().select(names), dtypes)
        if start != self.rows:
            raise RuntimeError(f"label rows {self.path}: read {start} rows of {self.rows}")


def _typed(batch: pa.RecordBatch | pa.Table, dtypes: dict[str, object]) -> pd.DataFrame:
    """``batch`` as pandas with ``dtypes``: integers come through pandas' nullable type, never
    through float (exact beyond 2**53), then take the whole frame's type."""
    frame = batch.to_pandas(types_mapper=nullable_integers)
    changed = {c: t for c, t in dtypes.items() if frame[c].dtype != t}
    return frame.astype(changed) if changed else frame
