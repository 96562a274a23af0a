"""Produce the raw tables of a use case from its source: plain functions, no Dagster.

A synthetic source rebuilds its deterministic world on each call (cheap) and generates only the
days asked for; a file source reads its file and cuts it into days. Either way the result is
keyed by partition (``YYYY-MM-DD``), so a single-run backfill of many days and a run of one day
share one code path. A file that does not read as its YAML says (a value ``timestamp_unit``
cannot parse, a mapped column gone) fails with the YAML's ``FILE:LINE: field: message``, the line
``playbook validate`` would have named.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

import pandas as pd

from assets.raw.file_source import FileSourceError, read_table
from assets.raw.synthetic import build_world
from assets.split.fixed_test import with_test_file_rows
from configs.schema.source import FileSource, SyntheticSource
from configs.schema.tables import Columns
from configs.schema.usecase import UseCaseSpec


def partition_range(spec: UseCaseSpec) -> tuple[date, date | None] | None:
    """First and last (inclusive) daily partition, or None for an unpartitioned events table."""
    if not spec.partitioned:
        return None
    source = spec.source
    if isinstance(source, SyntheticSource):
        return source.start_date, source.start_date + timedelta(days=source.days - 1)
    return source.start_date, source.end_date


def _timestamp_columns(columns: Columns) -> list[str]:
    return [name for name, column in columns.items() if column.dtype == "timestamp"]


def _world(source: SyntheticSource):
    return build_world(source.params, source.seed, source.start_date, source.days)


def _read(spec: UseCaseSpec, table: str, columns: Columns) -> pd.DataFrame:
    """Read one file table; a problem the YAML causes names its file and line, as validate does."""
    source = spec.source
    assert isinstance(source, FileSource)
    try:
        return read_table(source.tables[table], spec.base_dir, _timestamp_columns(columns))
    except FileSourceError as err:
        loc = ("source", "tables", table, *err.field.split("."))
        raise spec.field_error(loc, err.message) from None


def entity_table(spec: UseCaseSpec, table: str) -> pd.DataFrame:
    """The attribute table of one entity (``users``, ``items``, ``cards``, ...)."""
    entity = spec.entity_tables()[table]
    source = spec.source
    if isinstance(source, SyntheticSource):
        return _world(source).entity_table(table)
    assert isinstance(source, FileSource)
    if table not in source.tables:
        name = next(n for n, e in spec.entities.items() if e.table == table)
        raise spec.field_error(
            ("entities", name, "table"), f"source.tables has no {table!r} table to read it from"
        )
    return _read(spec, table, entity.table_columns())


def _file_events(spec: UseCaseSpec) -> pd.DataFrame:
    """The events table, with the rows of ``split.test_file`` appended when the YAML names one."""
    events = _read(spec, "events", spec.events.columns)
    try:
        return with_test_file_rows(spec, events)
    except FileSourceError as err:
        raise spec.field_error(tuple(err.field.split(".")), err.message) from None


def events_by_day(spec: UseCaseSpec, days: Sequence[str]) -> dict[str, pd.DataFrame]:
    """Events of each requested day (``YYYY-MM-DD``), sorted by event time within the day."""
    source = spec.source
    if isinstance(source, SyntheticSource):
        world = _world(source)
        return {day: world.events_for_day(date.fromisoformat(day)) for day in days}
    frame = _file_events(spec)
    column = spec.events.timestamp
    assert column is not None, "partitioned events always have a timestamp"
    frame = frame.sort_values(column, kind="stable", ignore_index=True)
    keys = frame[column].dt.strftime("%Y-%m-%d")
    grouped = {key: part.reset_index(drop=True) for key, part in frame.groupby(keys, sort=True)}
    return {day: grouped.get(day, frame.head(0)) for day in days}


def all_events(spec: UseCaseSpec) -> pd.DataFrame:
    """The whole events table, for a use case without daily partitions."""
    source = spec.source
    if isinstance(source, SyntheticSource):
        world = _world(source)
        days = [source.start_date + timedelta(days=i) for i in range(source.days)]
        return pd.concat([world.events_for_day(day) for day in days], ignore_index=True)
    return _file_events(spec)
