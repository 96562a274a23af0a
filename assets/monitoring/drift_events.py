"""The two periods of the event log that drift compares, read from the log's files.

The reference is the training split's period (the split plan's train window); the window is the
newest whole days that together hold at least ``monitoring.min_window_rows`` rows. Both are read
by :func:`assets.raw.event_log.read_events`, only the columns drift looks at (the watched columns,
the time, each binary label and its arrival time) and only the rows of the period. The window is
a few days, read whole. The reference is most of the log: it is handed on as chunks, one file's
rows of the period at a time, which the PSI fit and the shifts read pass by pass
(:mod:`assets.monitoring.reference_fit`), so the drift report's memory is one file's few columns
and the window, not the training period. The window's first day is decided from rows per day
counted one file at a time; the rows are those :func:`recent_window` would cut from the whole
log in memory, in the same order, and the reference's chunks concatenated are the training
period's rows of that log.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pandas as pd
from upath import UPath

from assets.monitoring.drift import watched_event_columns
from assets.raw.event_log import read_events, rows_per_day
from configs.schema.usecase import UseCaseSpec
from runtime.table_chunks import Chunks


def window_start(per_day: pd.Series, min_rows: int) -> pd.Timestamp:
    """The first day of the newest whole days that hold at least ``min_rows`` rows together
    (all days when the log holds fewer); ``per_day`` is rows per day, any order."""
    if per_day.empty:
        raise ValueError("the event log has no rows with a time: no recent window to watch")
    newest_first = per_day.sort_index(ascending=False)
    needed = int((newest_first.cumsum() < min_rows).sum()) + 1
    return newest_first.index[min(needed, len(newest_first)) - 1]


def recent_window(events: pd.DataFrame, timestamp: str, min_rows: int) -> pd.DataFrame:
    """The newest whole days of ``events`` that together hold at least ``min_rows`` rows."""
    days = events[timestamp].dt.floor("D")
    return events[days >= window_start(days.value_counts(), min_rows)]


def drift_event_columns(spec: UseCaseSpec) -> list[str]:
    """The events columns the drift report reads: what it watches, the time, and each binary
    label with the column saying when it arrived (the label-rate shift counts arrived ones)."""
    numeric, categorical = watched_event_columns(spec)
    columns = [str(spec.events.timestamp), *numeric, *categorical]
    for label in spec.labels.values():
        if label.kind == "binary":
            columns += [label.column, *([label.available_at] if label.available_at else [])]
    return [c for c in dict.fromkeys(columns) if c in spec.events.columns]


def period_chunks(
    files: Sequence[UPath],
    columns: Sequence[str],
    timestamp: str,
    start: pd.Timestamp | None,
    end: pd.Timestamp | None,
) -> Chunks:
    """The rows of the files with ``start <= timestamp < end``, one file at a time."""
    paths = tuple(files)

    def read(wanted: Sequence[str]) -> Iterator[pd.DataFrame]:
        for path in paths:
            yield read_events([path], wanted, timestamp, start=start, end=end)

    return Chunks(tuple(columns), read)


def drift_periods(
    spec: UseCaseSpec, files: Sequence[UPath], plan: pd.DataFrame
) -> tuple[Chunks, pd.DataFrame]:
    """(reference, window): the training period of the log's files as chunks, a file at a time,
    and the recent window in memory."""
    timestamp = str(spec.events.timestamp)
    columns = drift_event_columns(spec)
    first = window_start(rows_per_day(files, timestamp), spec.monitoring.min_window_rows)
    window = read_events(files, columns, timestamp, start=first)
    train = plan[plan["split"] == "train"].iloc[0]
    start, end = pd.Timestamp(train["window_start"]), pd.Timestamp(train["window_end"])
    return period_chunks(files, columns, timestamp, start, end), window
