"""The files an aggregate feature table is read from and written to, without holding either whole.

An aggregate table is computed out of core (``assets.features.aggregates.aggregate_files_sharded``):
its input is the ``raw_events`` files where the IO manager wrote them (one per daily partition,
or one file), and its output is written here, shard after shard, as one Parquet file at the path
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

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from upath import UPath

from configs.schema.usecase import UseCaseSpec
from runtime import layout
from runtime.layout import HomeLayout


def event_files(
    spec: UseCaseSpec, places: HomeLayout, partition_keys: Sequence[str] | None
) -> list[UPath]:
    """The ``raw_events`` files, as the IO manager would load them for a downstream asset.

    ``partition_keys`` are the daily partitions of the events (None: one unpartitioned file).
    A missing file fails the run as the IO manager's load would, naming what to materialize.
    """
    key = layout.raw_events_key(spec.name)
    if partition_keys is None:
        files = [places.table_file(key)]
    else:
        files = [places.table_file(key, partition) for partition in partition_keys]
    missing = [str(f) for f in files if not f.exists()]
    if missing or not files:
        raise dg.Failure(
            f"{'/'.join(key)}: {len(missing)} of {len(files)} event file(s) missing"
            f" ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''});"
            " materialize raw_events first"
        )
    return files


def log_size_and_end(files: Sequence[UPath], timestamp: str) -> tuple[int, pd.Timestamp | None]:
    """Rows of the event files (from their footers) and their latest ``timestamp``, read one
    file's timestamp column at a time: what sizes the shards and ends the data."""
    rows, end = 0, None
    for path in files:
        with path.open("rb") as handle:
            rows += pq.ParquetFile(handle).metadata.num_rows
        with path.open("rb") as handle:
            latest = pq.read_table(handle, columns=[timestamp]).column(0).to_pandas().max()
        if pd.notna(latest) and (end is None or latest > end):
            end = latest
    return rows, end


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
