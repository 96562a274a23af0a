"""The raw event log read by file: which files, how big, and only the rows and columns a stage needs.

``raw_events`` is written by the IO manager as one Parquet file per daily partition (or one file).
A downstream asset that takes it as an input gets every day and every column in memory at once,
which is what bounds the log a machine can process. The stages that read it here take it as a
dependency instead and read what they use: the feature tables stream the files into shards
(:mod:`assets.features.table_files`); drift reads the columns it watches for the rows of its two
periods, deciding the recent window from per-day counts read one file's timestamps at a time; the
split plan reads the time, group, label and test-file columns of every row, nothing else.

Every read is exact: the rows and their order are those of the IO manager's load filtered the same
way (files in partition order, rows in file order), and each file's pandas metadata restores the
same dtypes. Paths are ``UPath``s, opened as file handles, so a home on ``s3://`` reads the same.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from upath import UPath

from assets.raw.raw_assets import daily_partitions
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


def log_files(spec: UseCaseSpec, places: HomeLayout) -> list[UPath]:
    """Every file of the use case's event log: each daily partition in order, or the one file."""
    partitions = daily_partitions(spec)
    keys = None if partitions is None else partitions.get_partition_keys()
    return event_files(spec, places, keys)


def log_size_and_end(
    files: Sequence[UPath], timestamp: str | None
) -> tuple[int, pd.Timestamp | None]:
    """Rows of the event files (from their footers) and their latest ``timestamp`` (None for
    data without time), read one file's timestamp column at a time: what sizes the shards and
    ends the data."""
    rows, end = 0, None
    for path in files:
        with path.open("rb") as handle:
            rows += pq.ParquetFile(handle).metadata.num_rows
        if timestamp is None:
            continue
        with path.open("rb") as handle:
            latest = pq.read_table(handle, columns=[timestamp]).column(0).to_pandas().max()
        if pd.notna(latest) and (end is None or latest > end):
            end = latest
    return rows, end


def log_columns(files: Sequence[UPath]) -> list[str]:
    """The columns of the log (every file's, in first-seen order), read from the footers only."""
    names: dict[str, None] = {}
    for path in files:
        with path.open("rb") as handle:
            names.update(dict.fromkeys(pq.read_schema(handle).names))
    return [n for n in names if not n.startswith("__index_level_")]


def rows_per_day(files: Sequence[UPath], timestamp: str) -> pd.Series:
    """Rows per calendar day of ``timestamp`` over the whole log (index: the days, ascending),
    one file's timestamps in memory at a time; rows without a time are not counted."""
    counts: pd.Series | None = None
    for path in files:
        with path.open("rb") as handle:
            times = pq.read_table(handle, columns=[timestamp]).column(0).to_pandas()
        days = times.dt.floor("D").value_counts()
        counts = days if counts is None else counts.add(days, fill_value=0)
    if counts is None:
        return pd.Series(dtype="int64")
    return counts.sort_index().astype("int64")


def read_events(
    files: Sequence[UPath],
    columns: Sequence[str],
    timestamp: str | None = None,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """``columns`` of the rows with ``start <= timestamp < end`` (either bound optional), in log
    order, with a fresh index: the IO manager's frame filtered and projected, without the rest.

    Parquet row-group statistics let a file outside the period be skipped without reading its
    rows; only the kept rows of the named columns are ever in memory (plus one file's batch).
    """
    wanted = list(dict.fromkeys(columns))
    frames: list[pd.DataFrame] = []
    for path in files:
        with path.open("rb") as handle:
            bounds = _bounds(pq.read_schema(handle), timestamp, start, end)
            handle.seek(0)
            table = pq.read_table(handle, columns=wanted, filters=bounds)
        frames.append(table.to_pandas())  # each file's own pandas metadata: the same dtypes
    if not frames:
        raise ValueError("read_events: no event files given")
    # as the IO manager concatenates the partitions it loads
    return pd.concat(frames, ignore_index=True)


def _bounds(
    schema: pa.Schema,
    timestamp: str | None,
    start: pd.Timestamp | None,
    end: pd.Timestamp | None,
) -> list[tuple] | None:
    """The period as Parquet filters, each bound in the stored column's time zone (or naive)."""
    if timestamp is None:
        return None
    zone = getattr(schema.field(timestamp).type, "tz", None)
    found = [(op, _in_zone(moment, zone)) for op, moment in ((">=", start), ("<", end))]
    return [(timestamp, op, moment) for op, moment in found if moment is not None] or None


def _in_zone(moment: pd.Timestamp | None, zone: str | None) -> pd.Timestamp | None:
    """``moment`` comparable with a column stored in ``zone`` (None: naive, read as UTC)."""
    if moment is None:
        return None
    moment = pd.Timestamp(moment)
    if zone is None:
        return moment.tz_convert("UTC").tz_localize(None) if moment.tzinfo else moment
    return moment.tz_convert(zone) if moment.tzinfo else moment.tz_localize(zone)
