"""A fixed test set (``split.test_file``): read like the events table, marked, and checked early.

Public data often comes with its test set apart (Kaggle's test file, LETOR's test.txt beside
train.txt). Its rows join the raw events, so features see their history like any event's, and
carry ``TEST_FILE_ROWS`` = True, so the split sends every one of them to test and none to train.
The file is read with the events table's settings, any of them overridden by ``split.test_file``.

Ids that a reader makes up restart in every file and would collide with the events' own: a
``row_id`` is continued after the events' largest, and the groups numbered from a ``group_file``
sidecar after the events' largest group, so a test query is never merged with a train query.
"""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
from pydantic import ValidationError

from assets.raw.file_source import FileSourceError, peek_columns, read_table
from configs.schema.issues import short_list
from configs.schema.leakage import Problem
from configs.schema.source import FileSource, FileTable
from configs.schema.split import TEST_FILE_ROWS
from configs.schema.usecase import UseCaseSpec

AT = ("split", "test_file")


def _table(spec: UseCaseSpec) -> FileTable | None:
    if spec.split.test_file is None:
        return None
    if not isinstance(spec.source, FileSource):
        raise ValueError(f"{spec.name}: split.test_file needs source kind: file")
    return spec.split.test_table(spec.source)


def _continued(test: pd.DataFrame, events: pd.DataFrame, column: str) -> pd.DataFrame:
    """Shift ``column`` of the test rows past the events' largest value."""
    start = int(events[column].max()) + 1 if len(events) else 0
    return test.assign(**{column: test[column] + start})


def with_test_file_rows(spec: UseCaseSpec, events: pd.DataFrame) -> pd.DataFrame:
    """The events, then the test file's rows, with ``TEST_FILE_ROWS`` marking the latter.

    ``events`` as read from ``source.tables.events`` (spec names, parsed timestamps). Without a
    test file, or with its rows joined already (marked), they come back unchanged.
    """
    table = _table(spec)
    if table is None or TEST_FILE_ROWS in events:
        return events
    stamps = [name for name, column in spec.events.columns.items() if column.dtype == "timestamp"]
    try:
        test = read_table(table, spec.base_dir, stamps)
    except FileSourceError as error:
        raise FileSourceError(f"split.test_file.{error.field}", error.message) from None
    missing = [column for column in events.columns if column not in test.columns]
    if missing:
        raise FileSourceError(
            "split.test_file",
            f"{table.path} lacks column(s) {missing} of the events table; map them under"
            " split.test_file.columns",
        )
    test = test[list(events.columns)]
    if table.row_id:
        test = _continued(test, events, table.row_id)
    group = spec.events.group
    if table.group_file and group in test:
        test = _continued(test, events, group)
    return pd.concat(
        [events.assign(**{TEST_FILE_ROWS: False}), test.assign(**{TEST_FILE_ROWS: True})],
        ignore_index=True,
    )


def fixed_test_problems(spec: UseCaseSpec) -> Iterator[Problem]:
    """Config-time checks of the test file: it exists, reads, and has every declared column."""
    try:
        table = _table(spec)
    except (ValueError, ValidationError):
        return  # reported by the spec's cross-section checks (configs.schema.leakage)
    if table is None:
        return
    try:
        found = peek_columns(table, spec.base_dir)
    except FileSourceError as error:
        yield (*AT, *error.field.split(".")), error.message
        return
    for column in spec.events.columns:
        if column not in found:
            yield (
                AT,
                f"column {column!r} of events.columns is not in {table.path} after mapping (it"
                f" has: {short_list(found)}); map it under split.test_file.columns",
            )
