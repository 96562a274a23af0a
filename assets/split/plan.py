"""Train / validation / test assignment from the ``split`` section: plain functions, no Dagster.

Temporal splits are consecutive time windows, cut where the YAML says: at fractions of the
event-time span, at fractions of the rows in time order (``by: rows``: the cut falls on the
time of the first row past the share, so every earlier row is before it), or at cut dates. A
``gap`` separates them so features of rows near a boundary, computed from windows that would
otherwise reach across it, stay on their side; rows inside a gap are marked ``gap`` and left out.
Fractions take the gap from the start of the later split (train keeps its share), cut dates from
the end of the earlier one (a split starts exactly on its date). Group splits (data without time,
e.g. LETOR) send whole queries to one side by a salted, stable hash, so a query never appears on
both sides. Rows of a fixed test file (``split.test_file``, marked ``TEST_FILE_ROWS`` in the raw
events) are the test split whatever their time or group; the windows and fractions then divide
the other rows into train and validation only.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from assets.split.plan_counts import SplitTally, TimeStats
from configs.schema.base import parse_duration
from configs.schema.split import TEST_FILE_ROWS, SplitSpec
from runtime.table_chunks import Chunks

SPLITS = ("train", "validation", "test")
GAP = "gap"
ONE_NS = pd.Timedelta(1, "ns")


@dataclass(frozen=True)
class TimeWindow:
    """Half-open window [start, end) of one split."""

    name: str
    start: pd.Timestamp
    end: pd.Timestamp


def _names(spec: SplitSpec) -> list[str]:
    """The windowed splits, in time order: no test window when a test file gives the test rows,
    no validation window when cut dates leave it out."""
    names = ["train"]
    if spec.has_validation or not spec.dated:
        names.append("validation")
    if spec.test_file is None:
        names.append("test")
    return names


def _between(
    first: pd.Timestamp,
    end: pd.Timestamp,
    cuts: Sequence[pd.Timestamp],
    names: Sequence[str],
    gap: pd.Timedelta,
    gap_after_cut: bool,
) -> list[TimeWindow]:
    """Windows ``names`` from ``first`` to ``end`` with boundaries ``cuts``, a gap at each cut."""
    bounds = [first, *cuts, end]
    windows = []
    for i, name in enumerate(names):
        start, stop = bounds[i], bounds[i + 1]
        if i > 0 and gap_after_cut:
            start = start + gap
        if i < len(names) - 1 and not gap_after_cut:
            stop = stop - gap
        windows.append(TimeWindow(name, start, stop))
    return windows


def temporal_windows(first: pd.Timestamp, last: pd.Timestamp, spec: SplitSpec) -> list[TimeWindow]:
    """Consecutive windows covering [first, last] by span fractions, separated by ``spec.gap``.

    The last window's end is just after ``last`` so the final event belongs to it.
    """
    if last < first:
        raise ValueError(f"empty time span: last event {last} is before first {first}")
    span = last - first
    names = _names(spec)
    train_end = first + span * spec.train
    cuts = [train_end, train_end + span * spec.validation][: len(names) - 1]
    return _between(first, last + ONE_NS, cuts, names, _gap(spec), gap_after_cut=True)


def row_windows(times: pd.Series, spec: SplitSpec) -> list[TimeWindow]:
    """Windows holding exactly the configured shares of the rows, in time order (``by: rows``).

    Train is the earliest ``round(n * train)`` rows, validation the next ``round(n * (train +
    validation)) - round(n * train)``: each cut is the time of the first row past its share.
    Rows sharing that time go together to the later split (a window cannot split an instant),
    and a gap drops rows from the start of validation and of test.
    """
    ordered = np.sort(times.dropna().to_numpy())
    if len(ordered) == 0:
        raise ValueError("cannot cut an empty events table by rows")
    n = len(ordered)
    first, end = pd.Timestamp(ordered[0]), pd.Timestamp(ordered[-1]) + ONE_NS
    names = _names(spec)
    counts = [round(n * spec.train), round(n * (spec.train + spec.validation))]
    cuts = [pd.Timestamp(ordered[k]) if k < n else end for k in counts[: len(names) - 1]]
    return _between(first, end, cuts, names, _gap(spec), gap_after_cut=True)


def dated_windows(first: pd.Timestamp, last: pd.Timestamp, spec: SplitSpec) -> list[TimeWindow]:
    """Windows starting exactly at the cut dates; the gap ends the split before each cut early."""
    cuts = [pd.Timestamp(c) for c in (spec.validation_from, spec.test_from) if c is not None]
    end = last + ONE_NS
    return _between(first, end, cuts, _names(spec), _gap(spec), gap_after_cut=False)


def split_windows(times: pd.Series, spec: SplitSpec) -> list[TimeWindow]:
    """The temporal windows of ``times`` (the rows to divide) in the form the spec states."""
    if spec.dated:
        return dated_windows(times.min(), times.max(), spec)
    if spec.by == "rows":
        return row_windows(times, spec)
    return temporal_windows(times.min(), times.max(), spec)


def _gap(spec: SplitSpec) -> pd.Timedelta:
    return pd.Timedelta(parse_duration(spec.gap))


def assign_temporal(times: pd.Series, windows: list[TimeWindow]) -> pd.Series:
    """Split name of each timestamp; ``gap`` for those in no window."""
    labels = np.full(len(times), GAP, dtype=object)
    values = times.to_numpy()
    for window in windows:
        inside = (values >= window.start.to_datetime64()) & (values < window.end.to_datetime64())
        labels[inside] = window.name
    return pd.Series(labels, index=times.index, name="split", dtype="category")


def assign_groups(groups: pd.Series, spec: SplitSpec) -> pd.Series:
    """Split name of each row by a salted hash of its group, stable across runs and machines."""
    key = f"playbook{spec.seed:08d}"[:16].ljust(16, "0")
    hashes = pd.util.hash_array(groups.astype(str).to_numpy(dtype=object), hash_key=key)
    unit = hashes.astype(np.float64) / float(np.iinfo(np.uint64).max)
    edges = np.array([spec.train, spec.train + spec.validation])
    labels = np.array(SPLITS, dtype=object)[np.searchsorted(edges, unit, side="right")]
    return pd.Series(labels, index=groups.index, name="split", dtype="category")


def fixed_test_rows(frame: pd.DataFrame) -> np.ndarray:
    """Which rows came from ``split.test_file`` (none when the frame has no such mark)."""
    if TEST_FILE_ROWS not in frame:
        return np.zeros(len(frame), dtype=bool)
    return frame[TEST_FILE_ROWS].fillna(False).to_numpy(dtype=bool)


def _with_fixed_test(split: pd.Series, fixed: np.ndarray) -> pd.Series:
    if not fixed.any():
        return split
    labels = split.astype(object).to_numpy()
    labels[fixed] = "test"
    return pd.Series(labels, index=split.index, name="split", dtype="category")


def assign_split(
    spec: SplitSpec,
    frame: pd.DataFrame,
    plan: pd.DataFrame,
    time_column: str | None,
    group_column: str | None,
) -> pd.Series:
    """Split name of each row of ``frame`` (a training set): the plan's windows for temporal
    splits, the group hash otherwise, and test for every row of a fixed test file."""
    if spec.method == "group":
        if group_column is None:
            raise ValueError("a group split needs events.group")
        split = assign_groups(frame[group_column], spec)
    else:
        if time_column is None:
            raise ValueError("a temporal split needs events.timestamp")
        windows = [
            TimeWindow(row.split, pd.Timestamp(row.window_start), pd.Timestamp(row.window_end))
            for row in plan.dropna(subset=["window_start"]).itertuples()
        ]
        split = assign_temporal(frame[time_column], windows)
    return _with_fixed_test(split, fixed_test_rows(frame))


def split_summary(
    frame: pd.DataFrame,
    split: pd.Series,
    time_column: str | None,
    group_column: str | None,
    label_columns: dict[str, str],
) -> pd.DataFrame:
    """One row per split (gap included when non-empty): rows, groups, time range, label rates."""
    tally = SplitTally(time_column, group_column, label_columns)
    tally.add(frame, split)
    return tally.table((*SPLITS, GAP), GAP)


def mature_rows(times: pd.Series, maturity: pd.Timedelta) -> pd.Series:
    """Rows old enough at the end of the data (the latest time) for their labels to be final.

    A row whose label may still change cannot be learned from or evaluated on: the split is
    planned over the mature rows, so a late-label use case (fraud) gets a test window of final
    labels, and the training sets drop the same rows by the same rule.
    """
    return times <= times.max() - maturity


def plan_split(
    events: pd.DataFrame,
    spec: SplitSpec,
    time_column: str | None,
    group_column: str | None,
    label_columns: dict[str, str],
) -> pd.DataFrame:
    """The split plan of an events table: per split its window (temporal), rows, groups, label rates.

    The windows (or group fractions) divide the rows that are not from a fixed test file; those
    are test. A split with no window (the test of a test file) has no window bounds.
    """
    if events.empty:
        raise ValueError("cannot plan a split of an empty events table")
    return plan_split_chunks(Chunks.of(events), spec, time_column, group_column, label_columns)


def _windows(
    spec: SplitSpec, stats: TimeStats, chunks: Chunks, time_column: str
) -> list[TimeWindow]:
    """The temporal windows of the rows to divide, from their stats: what
    :func:`split_windows` gives on those rows in memory."""
    if spec.dated:
        return dated_windows(stats.first, stats.last, spec)
    if spec.by != "rows":
        return temporal_windows(stats.first, stats.last, spec)
    n = stats.count
    if n == 0:
        raise ValueError("cannot cut an empty events table by rows")
    first, end = stats.first, stats.last + ONE_NS
    names = _names(spec)
    counts = [round(n * spec.train), round(n * (spec.train + spec.validation))]
    counts = counts[: len(names) - 1]

    def times() -> Iterator[pd.Series]:
        for chunk in chunks():
            yield chunk[time_column][~fixed_test_rows(chunk)]

    inside = [k for k in counts if k < n]
    found = dict(zip(inside, stats.kth(inside, times), strict=True)) if inside else {}
    cuts = [found.get(k, end) for k in counts]
    return _between(first, end, cuts, names, _gap(spec), gap_after_cut=True)


def plan_split_chunks(
    chunks: Chunks,
    spec: SplitSpec,
    time_column: str | None,
    group_column: str | None,
    label_columns: dict[str, str],
) -> pd.DataFrame:
    """:func:`plan_split` of the rows ``chunks`` yields (a log read a file at a time, say),
    never holding more than a chunk: one pass for a group split, two for a temporal one (the
    windows, then the rows per window), three for ``by: rows`` (the day of each cut read again)."""
    tally = SplitTally(time_column, group_column, label_columns)
    if spec.method == "group":
        if group_column is None:
            raise ValueError("a group split needs events.group")
        for chunk in chunks():
            split = _with_fixed_test(
                assign_groups(chunk[group_column], spec), fixed_test_rows(chunk)
            )
            tally.add(chunk, split)
        if not tally.rows:
            raise ValueError("cannot plan a split of an empty events table")
        return tally.table((*SPLITS, GAP), GAP)
    if time_column is None:
        raise ValueError("a temporal split needs events.timestamp")
    stats, rows, fixed_rows = TimeStats(by_day=spec.by == "rows" and not spec.dated), 0, 0
    for chunk in chunks():
        fixed = fixed_test_rows(chunk)
        stats.add(chunk[time_column][~fixed])
        rows, fixed_rows = rows + len(chunk), fixed_rows + int(fixed.sum())
    if rows == 0:
        raise ValueError("cannot plan a split of an empty events table")
    if fixed_rows == rows:
        raise ValueError("every row is from split.test_file: none is left for train")
    windows = _windows(spec, stats, chunks, time_column)
    for chunk in chunks():
        split = _with_fixed_test(
            assign_temporal(chunk[time_column], windows), fixed_test_rows(chunk)
        )
        tally.add(chunk, split)
    summary = tally.table((*SPLITS, GAP), GAP)
    bounds = pd.DataFrame(
        {
            "split": [w.name for w in windows],
            "window_start": [w.start for w in windows],
            "window_end": [w.end for w in windows],
        }
    )
    return summary.merge(bounds, on="split", how="left")
