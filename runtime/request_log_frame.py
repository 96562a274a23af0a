"""The request log as a frame: which rows are readable, typed, and why the others are not.

:func:`parse_request_log` applies the row rules of :mod:`runtime.request_log_rules` to every raw
row of the table (as :func:`runtime.request_log.load_request_log` reads it, or a frame built the
same way), parses all the times at once, and returns the readable rows as a typed frame with the
skipped ones and their reasons (:class:`RequestLogRows`). It never raises on a row.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from runtime.request_log_rules import (
    BAD_TIME,
    JSON_COLUMNS,
    REASONS,
    Need,
    Unreadable,
    decode_row,
    row_times,
)

RAW_COLUMNS = ("id", "logged_at", "endpoint", "unit", "arm", *JSON_COLUMNS)
RAW_COLUMNS += ("feature_misses", "latency_ms")
# the typed frame: the raw columns, JSON decoded, plus ``served_at`` (the request's ``as_of`` when
# it has one, as replayed traffic does, else ``logged_at``; naive UTC)
COLUMNS = (*RAW_COLUMNS[:2], "served_at", *RAW_COLUMNS[2:])
UNREADABLE = "unreadable_log_rows"


@dataclass(frozen=True)
class RequestLogRows:
    """The readable rows of a request log and the ones skipped, each with its reason.

    ``frame`` has :data:`COLUMNS` (``id`` int64, ``logged_at`` float unix seconds, ``served_at``
    datetime64, JSON columns decoded, ``feature_misses`` Int64, ``latency_ms`` float);
    ``rejected`` has ``id``, ``reason`` (one of :data:`runtime.request_log_rules.REASONS`) and
    ``detail`` (the field and what is wrong with it).
    """

    frame: pd.DataFrame
    rejected: pd.DataFrame

    @property
    def unreadable(self) -> int:
        return len(self.rejected)

    def counts(self) -> dict[str, int]:
        """Skipped rows per reason, in the order of ``REASONS``, reasons with none left out."""
        found = self.rejected["reason"].value_counts()
        return {reason: int(found[reason]) for reason in REASONS if reason in found}

    def metadata(self) -> dict[str, int]:
        """``unreadable_log_rows`` and ``unreadable_log_rows/<reason>``, for asset metadata."""
        return {
            UNREADABLE: self.unreadable,
            **{f"{UNREADABLE}/{r}": n for r, n in self.counts().items()},
        }

    def describe(self, examples: int = 3) -> str:
        """One sentence for a log line or a check: how many were skipped, why, which."""
        if not self.unreadable:
            return "every request-log row was readable"
        reasons = ", ".join(f"{n} {reason}" for reason, n in self.counts().items())
        shown = "; ".join(
            f"row {row.id}: {row.reason}: {row.detail}"
            for row in self.rejected.head(examples).itertuples()
        )
        return f"{self.unreadable} unreadable request-log row(s) skipped ({reasons}), e.g. {shown}"


def parse_request_log(
    raw: pd.DataFrame,
    types: Mapping[str, str] | None = None,
    needs: Sequence[Need] = (),
    endpoint: str | None = None,
) -> RequestLogRows:
    """The readable rows of ``raw`` (the table as stored: JSON columns as text) as a typed frame,
    and every other row with its reason (see :mod:`runtime.request_log_rules`).

    Every row is checked for JSON, finite numbers, int64 integers and the columns' types; a
    request's fields named in ``types`` (:func:`declared_types`) must be of that type and its
    ``as_of`` a time; ``needs`` are the reader's own fields, checked in the rows of ``endpoint``
    (every row when None). Never raises on a row. Columns this version does not know (added by
    a newer one) are carried through as stored.
    """
    extra = [column for column in raw.columns if column not in RAW_COLUMNS]
    names = (*RAW_COLUMNS, *extra)
    given = [_values(raw, column) for column in names]
    with _no_gc():
        return _parse(given, names, extra, types or {}, needs, endpoint)


@contextmanager
def _no_gc() -> Iterator[None]:
    """The collector paused while rows are decoded: decoded JSON holds no cycles, yet each of
    the millions of new objects counts toward a full collection over all of them (a third of
    the read's time on a 100,000-row log)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _parse(
    given: list[list[Any]],
    names: tuple[str, ...],
    extra: list[str],
    types: Mapping[str, str],
    needs: Sequence[Need],
    endpoint: str | None,
) -> RequestLogRows:
    rows, rejected, times, owners, as_of = [], [], [], [], []
    for values in zip(*given, strict=True):
        record = dict(zip(names, values, strict=True))
        try:
            row = decode_row(record) | {column: record[column] for column in extra}
            # a failed request (error set) logged no scores or features: the reader's needs
            # apply to answered requests
            own = (endpoint is None or row["endpoint"] == endpoint) and not row.get("error")
            texts, has_as_of = row_times(row, types, needs if own else ())
        except Unreadable as error:
            rejected.append((record["id"], error.reason, error.detail))
            continue
        as_of.append(len(times) if has_as_of else -1)  # as_of is the row's first time
        owners += [len(rows)] * len(texts)
        times += texts
        rows.append(row)
    owned, first = np.array(owners, dtype=int), np.array(as_of, dtype=int)
    return _checked_times(rows, rejected, times, owned, first, extra)


def _values(raw: pd.DataFrame, column: str) -> list[Any]:
    """A column's values as stored, a frame's NaN / NA as None, an absent column as nulls (an
    absent ``id`` as the row's position)."""
    if column not in raw.columns:
        return list(range(len(raw))) if column == "id" else [None] * len(raw)
    values = raw[column].astype(object)
    return values.where(values.notna(), None).tolist()


def _parse_times(texts: Sequence[Any]) -> np.ndarray:
    """ISO 8601 texts (UTC when no zone is given) as naive UTC ``datetime64[ns]``; NaT for a
    null or a text that is not such a time in range. The one parse of a logged time."""
    series = pd.Series(list(texts), dtype=object)
    parsed = pd.to_datetime(series, utc=True, errors="coerce", format="ISO8601")
    return parsed.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")


def served_times(frame: pd.DataFrame) -> pd.Series:
    """When each row's request was served: its ``as_of`` when it has one, else ``logged_at``,
    naive UTC. :func:`parse_request_log` computes this as ``served_at``; this is for a frame
    built otherwise (tests, an older caller), with the same parse."""
    as_of = [r.get("as_of") if type(r) is dict else None for r in frame["request"]]
    parsed = _parse_times(as_of)
    logged = pd.to_datetime(frame["logged_at"], unit="s").to_numpy(dtype="datetime64[ns]")
    return pd.Series(np.where(np.isnat(parsed), logged, parsed), index=frame.index)


def _checked_times(
    rows: list[dict[str, Any]],
    rejected: list[tuple[Any, str, str]],
    times: list[str],
    owners: np.ndarray,
    as_of: np.ndarray,
    extra: Sequence[str],
) -> RequestLogRows:
    """Parse every row's times in one go (``owners``: the row of each); a row with one that is
    not a time is ``bad_time``; ``served_at`` is the row's ``as_of`` (index into ``times``, -1:
    none) or its ``logged_at``."""
    parsed = _parse_times(times)
    first_bad: dict[int, str] = {}
    for index in np.flatnonzero(np.isnat(parsed)).tolist():
        first_bad.setdefault(int(owners[index]), times[index])
    for position, text in first_bad.items():
        detail = f"{text!r:.60} is not an ISO 8601 time within 1677-2262"
        rejected.append((rows[position]["id"], BAD_TIME, detail))
    frame = _typed(rows, extra)
    logged = pd.to_datetime(frame["logged_at"], unit="s").to_numpy(dtype="datetime64[ns]")
    frame["served_at"] = np.where(
        as_of >= 0, parsed[np.maximum(as_of, 0)] if len(parsed) else logged, logged
    )
    keep = np.ones(len(frame), dtype=bool)
    keep[list(first_bad)] = False
    return RequestLogRows(frame[keep].reset_index(drop=True), _rejected(rejected))


def _typed(rows: list[dict[str, Any]], extra: Sequence[str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=[*COLUMNS, *extra])
    frame["id"] = frame["id"].astype("int64")
    frame["logged_at"] = frame["logged_at"].astype("float64")
    frame["feature_misses"] = frame["feature_misses"].astype("Int64")
    frame["latency_ms"] = frame["latency_ms"].astype("float64")
    for column in ("endpoint", "unit", "arm", *JSON_COLUMNS):
        frame[column] = frame[column].astype(object)
    return frame


def _rejected(rows: list[tuple[Any, str, str]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["id", "reason", "detail"])
    return frame.sort_values("id", kind="stable").reset_index(drop=True)
