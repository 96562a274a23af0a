"""Train / validation / test assignment from the ``split`` section: plain functions, no Dagster.

Temporal splits cut the event-time span into consecutive windows by the configured fractions and
leave a ``gap`` before validation and before test: features of rows near a boundary are computed
from windows that would otherwise reach across it. Rows inside a gap are marked ``gap`` and left
out. Group splits (data without time, e.g. LETOR) send whole queries to one side by a salted,
stable hash, so a query never appears on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from configs.schema.base import parse_duration
from configs.schema.tables import SplitSpec

SPLITS = ("train", "validation", "test")
GAP = "gap"


@dataclass(frozen=True)
class TimeWindow:
    """Half-open window [start, end) of one split."""

    name: str
    start: pd.Timestamp
    end: pd.Timestamp


def temporal_windows(first: pd.Timestamp, last: pd.Timestamp, spec: SplitSpec) -> list[TimeWindow]:
    """Consecutive windows covering [first, last], separated by ``spec.gap``.

    The last window's end is just after ``last`` so the final event belongs to test.
    """
    if last < first:
        raise ValueError(f"empty time span: last event {last} is before first {first}")
    span = last - first
    gap = pd.Timedelta(parse_duration(spec.gap))
    train_end = first + span * spec.train
    validation_end = train_end + span * spec.validation
    end = last + pd.Timedelta(1, "ns")
    return [
        TimeWindow("train", first, train_end),
        TimeWindow("validation", train_end + gap, validation_end),
        TimeWindow("test", validation_end + gap, end),
    ]


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


def split_summary(
    frame: pd.DataFrame,
    split: pd.Series,
    time_column: str | None,
    group_column: str | None,
    label_columns: dict[str, str],
) -> pd.DataFrame:
    """One row per split (gap included when non-empty): rows, groups, time range, label rates."""
    rows = []
    for name in (*SPLITS, GAP):
        part = frame[split.to_numpy() == name]
        if name == GAP and part.empty:
            continue
        row: dict[str, object] = {"split": name, "rows": len(part)}
        if group_column:
            row["groups"] = int(part[group_column].nunique())
        if time_column:
            row["start"] = part[time_column].min() if len(part) else pd.NaT
            row["end"] = part[time_column].max() if len(part) else pd.NaT
        for label, column in label_columns.items():
            row[f"{label}_rate"] = float(part[column].mean()) if len(part) else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


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
    """The split plan of an events table: per split its window (temporal), rows, groups, label rates."""
    if events.empty:
        raise ValueError("cannot plan a split of an empty events table")
    if spec.method == "temporal":
        if time_column is None:
            raise ValueError("a temporal split needs events.timestamp")
        times = events[time_column]
        windows = temporal_windows(times.min(), times.max(), spec)
        summary = split_summary(
            events, assign_temporal(times, windows), time_column, group_column, label_columns
        )
        bounds = pd.DataFrame(
            {
                "split": [w.name for w in windows],
                "window_start": [w.start for w in windows],
                "window_end": [w.end for w in windows],
            }
        )
        return summary.merge(bounds, on="split", how="left")
    if group_column is None:
        raise ValueError("a group split needs events.group")
    return split_summary(
        events, assign_groups(events[group_column], spec), time_column, group_column, label_columns
    )
