"""A training set's Parquet file, written a chunk of rows at a time: the set is never held whole.

The point-in-time join hands its answer back in chunks of label rows
(:func:`assets.training.sharded_join.sharded_join_chunks`); each chunk is finished (split,
request features) and parked here as its own part file. The parts may disagree on a dtype the
whole frame would give one way: a request feature computed over an integer column is numpy's
``float64`` in a chunk without nulls and pandas' ``Float64`` in one with them, and the split is a
category of the values each chunk happens to hold. So the final file is written only when every
part is in: each column gets the dtype ``pandas.concat`` of all the parts gives (found from
their empty heads, not their rows), the split's categories are the splits present, sorted (what
``dtype="category"`` and ``remove_unused_categories`` give the whole frame), and the parts are
read back one at a time, cast and appended to the target. The target is written as
:func:`assets.features.table_files.staged_parquet` writes a feature table: beside it, renamed
over it only when complete, so a failed run leaves the earlier set as it was.

Read back with pandas, the file is the frame the whole-frame build gave, written and read by the
IO manager (``tests/integration/test_sharded_training_set.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from upath import UPath

from assets.features.table_files import staged_parquet


class SetParts:
    """Finished chunks of one training set, parked in ``folder`` until :meth:`write`."""

    def __init__(self, folder: Path, split_column: str) -> None:
        self.folder = folder
        self.split_column = split_column
        self.parts: list[Path] = []
        self.heads: list[pd.DataFrame] = []  # each part's columns and dtypes, no rows
        self.splits: set[str] = set()

    def add(self, chunk: pd.DataFrame) -> None:
        """Park one finished chunk (all chunks have the same columns, in the same order)."""
        if self.heads and list(chunk.columns) != list(self.heads[0].columns):
            raise ValueError("training set: a chunk's columns differ from the first chunk's")
        path = self.folder / f"part-{len(self.parts):05d}.parquet"
        self.folder.mkdir(parents=True, exist_ok=True)
        chunk.to_parquet(path, index=False)
        self.parts.append(path)
        self.heads.append(chunk.head(0).copy())  # a copy: a view would keep the chunk
        self.splits.update(str(s) for s in chunk[self.split_column].unique())

    def dtypes(self) -> pd.Series:
        """Each column's dtype in the whole set: the parts' dtypes as ``pandas.concat`` joins them."""
        dtypes = pd.concat(self.heads, ignore_index=True).dtypes
        dtypes[self.split_column] = pd.CategoricalDtype(sorted(self.splits))
        return dtypes

    def _schema(self, dtypes: pd.Series) -> pa.Schema:
        """The file's schema: the whole set's dtypes as Arrow types and pandas metadata, an
        object column's type (null in an empty head) taken from the parts' files."""
        empty = pa.Schema.from_pandas(self.heads[0].astype(dtypes.to_dict()), preserve_index=False)
        files = pa.unify_schemas(
            [pq.read_schema(path) for path in self.parts], promote_options="permissive"
        )
        fields = [files.field(f.name) if pa.types.is_null(f.type) else f for f in empty]
        return pa.schema(fields, metadata=empty.metadata)

    def write(self, target: UPath, sink: Callable[[pd.DataFrame], None] | None = None) -> int:
        """Write every part, cast to the whole set's dtypes, to ``target``; each part, so cast,
        is also given to ``sink`` (metadata and quality summed as they pass). The rows written."""
        if not self.parts:
            raise ValueError("training set: no chunk was written")
        dtypes = self.dtypes()
        schema = self._schema(dtypes)
        rows = 0
        with staged_parquet(target, schema) as writer:
            for path in self.parts:
                frame = pd.read_parquet(path).astype(dtypes.to_dict())
                writer.write_table(pa.Table.from_pandas(frame, schema=schema, preserve_index=False))
                rows += len(frame)
                if sink is not None:
                    sink(frame)
                del frame
        return rows
