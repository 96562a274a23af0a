"""The files an aggregate feature table is read from and written to, without holding either whole.

An aggregate table is computed out of core (``assets.features.aggregates.aggregate_files_sharded``):
its input is the ``raw_events`` files where the IO manager wrote them
(:mod:`assets.raw.event_log`), and its output is written here, shard after shard, as one Parquet file at the path
the IO manager would use (``HomeLayout.table_file``), so every consumer that reads the table by
its ``path`` metadata (Feast file sources, the point-in-time join, funnel evaluation, batch
predictions) reads it as before.

The write is atomic, as the IO manager's is: the file is written beside the target under a
hidden name and renamed over it only when every shard is in, so a failed run never loses or
corrupts the earlier materialization. Rows are in (keys, time) order within each shard, shards in
shard order: no consumer relies on a global order (they all join or filter in DuckDB or Feast).

What the asset reports (rows, time range, null rates, entities, preview) is summed over the
shards as they pass (:class:`assets.metadata.TableSummary`): shards hold whole entities, so
entity counts add.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import pyarrow as pa
import pyarrow.parquet as pq
from upath import UPath


def shards_schema(outputs: Sequence[str]) -> pa.Schema:
    """One schema for every shard's output: a column that is all null in one shard is typed as
    in the others (the pandas metadata of the first shard is kept)."""
    return pa.unify_schemas([pq.read_schema(p) for p in outputs], promote_options="permissive")


def shard_tables(outputs: Sequence[str], schema: pa.Schema) -> Iterator[pa.Table]:
    """Each shard's output as an Arrow table of ``schema``, one in memory at a time."""
    for path in outputs:
        yield pq.read_table(path).select(schema.names).cast(schema)


@contextmanager
def staged_parquet(target: UPath, schema: pa.Schema) -> Iterator[pq.ParquetWriter]:
    """A Parquet writer on a hidden file beside ``target``, renamed over it when the block ends
    without error; on an error the hidden file is removed and ``target`` is left as it was."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        with staging.open("wb") as handle, pq.ParquetWriter(handle, schema) as writer:
            yield writer
        staging.rename(target)
    finally:
        if staging.exists():
            staging.unlink()
