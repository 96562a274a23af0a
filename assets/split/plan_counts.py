"""What a split plan counts, chunk by chunk: the plan of a log read a file at a time.

A plan needs of the whole log only a few numbers: the first and last event time to divide (and,
for ``by: rows``, the time of the k-th row in time order), then per split its rows, groups, time
range and label rates. :class:`TimeStats` and :class:`SplitTally` gather them from chunks of
rows, so the split-plan asset reads the log one file at a time, never whole, and a frame in
memory is planned as one chunk by the same code (:func:`assets.split.plan.plan_split_chunks`).

The k-th time is exact without sorting the log: rows are counted per day on the first pass, and
only the day holding the k-th row is read again, sorted, and indexed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd


def _earlier(a, b):
    """The earlier of two moments, either maybe NaT (as ``Series.min`` skips nulls)."""
    if pd.isna(a):
        return b
    return a if pd.isna(b) or a <= b else b


def _later(a, b):
    if pd.isna(a):
        return b
    return a if pd.isna(b) or a >= b else b


class TimeStats:
    """The first and last time, the count of non-null times, and rows per day, of the times to
    divide (the rows not from a test file), gathered chunk by chunk."""

    def __init__(self, by_day: bool = True) -> None:
        self.first = pd.NaT
        self.last = pd.NaT
        self.count = 0
        self.by_day = by_day  # count rows per day: only a cut by rows needs them
        self.per_day: pd.Series | None = None

    def add(self, times: pd.Series) -> None:
        self.first = _earlier(self.first, times.min())
        self.last = _later(self.last, times.max())
        self.count += int(times.notna().sum())
        if self.by_day:
            days = times.dropna().dt.floor("D").value_counts()
            self.per_day = days if self.per_day is None else self.per_day.add(days, fill_value=0)

    def kth(self, ks: list[int], times: Callable[[], Iterator[pd.Series]]) -> list[pd.Timestamp]:
        """The ``k``-th smallest time (0-based) for each of ``ks`` (each below ``count``), as
        ``np.sort(times)[k]`` gives it: the day holding it from the counts per day, then that
        day's times, read again (``times``), sorted."""
        assert self.per_day is not None
        per_day = self.per_day.sort_index().astype(np.int64)
        ends = per_day.cumsum().to_numpy()
        days = [per_day.index[int(np.searchsorted(ends, k, side="right"))] for k in ks]
        wanted = set(days)
        found: dict[pd.Timestamp, list[np.ndarray]] = {day: [] for day in wanted}
        for chunk in times():
            chunk = chunk.dropna()
            floors = chunk.dt.floor("D")
            for day in wanted:
                found[day].append(chunk[floors == day].to_numpy())
        picked = []
        for k, day in zip(ks, days, strict=True):
            before = int(ends[per_day.index.get_loc(day)] - per_day[day])
            ordered = np.sort(np.concatenate(found[day]))
            picked.append(pd.Timestamp(ordered[k - before]))
        return picked


class SplitTally:
    """Per split: rows, distinct groups, time range and label sums, added chunk by chunk."""

    def __init__(
        self, time_column: str | None, group_column: str | None, label_columns: dict[str, str]
    ) -> None:
        self.time_column = time_column
        self.group_column = group_column
        self.label_columns = label_columns
        self.rows: dict[str, int] = {}
        self.groups: dict[str, set] = {}
        self.start: dict[str, object] = {}
        self.end: dict[str, object] = {}
        self.sums: dict[tuple[str, str], float] = {}
        self.counts: dict[tuple[str, str], int] = {}

    def add(self, frame: pd.DataFrame, split: pd.Series) -> None:
        names = split.to_numpy()
        for name in pd.unique(names):
            part = frame[names == name]
            self.rows[name] = self.rows.get(name, 0) + len(part)
            if self.group_column:
                self.groups.setdefault(name, set()).update(part[self.group_column].dropna())
            if self.time_column:
                times = part[self.time_column]
                self.start[name] = _earlier(self.start.get(name, pd.NaT), times.min())
                self.end[name] = _later(self.end.get(name, pd.NaT), times.max())
            for column in self.label_columns.values():
                key = (name, column)
                self.sums[key] = self.sums.get(key, 0) + part[column].sum()
                self.counts[key] = self.counts.get(key, 0) + int(part[column].count())

    def table(self, names: tuple[str, ...], gap: str) -> pd.DataFrame:
        """One row per split of ``names`` (``gap`` only when it has rows): rows, groups, time
        range, label rates (NaN for a split without rows)."""
        rows = []
        for name in names:
            count = self.rows.get(name, 0)
            if name == gap and count == 0:
                continue
            row: dict[str, object] = {"split": name, "rows": count}
            if self.group_column:
                row["groups"] = len(self.groups.get(name, ()))
            if self.time_column:
                row["start"] = self.start.get(name, pd.NaT)
                row["end"] = self.end.get(name, pd.NaT)
            for label, column in self.label_columns.items():
                known = self.counts.get((name, column), 0)
                total = self.sums.get((name, column), 0)
                row[f"{label}_rate"] = float(total / known) if known else float("nan")
            rows.append(row)
        return pd.DataFrame(rows)
