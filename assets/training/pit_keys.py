"""The sort keys of the point-in-time join: (event, created) packed into one sortable integer.

DuckDB's ``ASOF JOIN`` returns one arbitrary row among rows with equal timestamps, so
:mod:`assets.training.pit_join` joins on one integer that orders exactly like the pair
``(event_timestamp, created_timestamp)``, a null created time below every real one; the label
side gets the largest key at its as-of time. This module decides that key for one feature table.

The key is a BIGINT, ``(event - origin) * width + (created - event - low + 1)`` (0 in the low
part for a null created time), counted in seconds or milliseconds when every time is whole in
that unit, when the event span times the created-lag span fits under 2**63 (e.g. 30 days of
microsecond events created within 3.5 s, or of millisecond events created within 40 days);
otherwise a HUGEINT, ``event_us * 2**64 + (created_us + 2**63)``. Both are exact; the BIGINT one
joins about as fast as a plain timestamp ASOF, the 16-byte one took about twice as long at 10M
rows. The event time comes back out of the key (``key // width``), so the feature side carries
no separate event column into the join's sort just for the TTL test.

Which key, two ways:

* guessed (the default): the event span is known without reading the table, from the labels'
  as-of range and the TTL (only rows with ``min(as_of) - ttl <= event <= max(as_of)`` take
  part), and the lag range from a sample of the first rows. Each feature row's key is then
  guarded: a row outside the guessed lags, or another created time where the sample showed one
  for every row, makes DuckDB raise :data:`GUARD`, and the caller redoes the join the exact way.
  An answer that comes back is exact; the price of a wrong guess is the part of the join run
  before the error.
* from statistics: one min/max scan of the table's eligible rows, as before the guess existed;
  it never fails, and it also tries whole seconds and milliseconds.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import TYPE_CHECKING

import duckdb

if TYPE_CHECKING:  # the table's description lives with the join; this module only reads it
    from assets.training.pit_join import FeatureTable

US = "__pit_us"  # label as-of time, UTC microseconds
SK = "__pit_sk"  # the (event, created) sort key
GUARD = "__pit_guard: a feature row is outside the guessed key"  # the error a wrong guess raises
SAMPLE_ROWS = 1 << 16  # eligible rows read to guess the lag range
_BIGINT_MAX = (1 << 63) - 1  # packed keys, and every product on the way to them, stay below
_UNITS = (1_000_000, 1_000)  # coarser time units tried for BIGINT keys: seconds, milliseconds
_LOW = 1 << 64  # room for the created half of the key
_BIAS = 1 << 63  # makes signed created microseconds non-negative


def quote(name: str) -> str:
    """Quote an identifier for SQL, so any column name is safe."""
    return '"' + name.replace('"', '""') + '"'


def epoch_us(column: str, dtype: str) -> str:
    """SQL for UTC microseconds of a timestamp column of type ``dtype``, never session-zoned.

    ``epoch_us`` takes naive timestamps of any unit and microsecond ``TIMESTAMPTZ``; nanosecond
    zoned times (pandas writes them to parquet) are floored from ``epoch_ns``, since casting them
    to ``TIMESTAMPTZ`` would round and casting to naive ``TIMESTAMP`` would apply the session zone.
    """
    if dtype in ("TIMESTAMPTZ_NS", "TIMESTAMP_NS WITH TIME ZONE"):
        ns = f"epoch_ns({quote(column)})"
        return f"(({ns} - ((({ns} % 1000) + 1000) % 1000)) // 1000)"
    return f"epoch_us({quote(column)})"


@dataclass(frozen=True)
class Side:
    """One feature table's side of the join: its rows with keys, and how label keys compare.

    ``feature_sql`` selects keys, features and the sort key ``SK``; ``label_key`` is the SQL
    (over the label's as-of microseconds ``US``) for the largest key at that time; ``event``
    turns a key (SQL, the placeholder ``{key}``) back into its event time in UTC microseconds.
    """

    feature_sql: str
    label_key: str
    event: str


@dataclass(frozen=True)
class _Key:
    """A key encoding: the feature key, the label key and the event time out of a key."""

    feature: str
    label: str
    event: str


def table_side(
    con: duckdb.DuckDBPyConnection,
    table: FeatureTable,
    source: str,
    types: dict[str, str],
    window: tuple[int, int] | None,
    guess: bool = True,
) -> Side:
    """The table's rows that can matter, keyed by a guessed key or one its statistics allow.

    Only rows with ``min(as_of) - ttl <= event <= max(as_of)`` are kept (``window`` is the labels'
    as-of range): a later row is never eligible, an older one is stale for every label, so
    dropping them changes no answer but shrinks the sort and the key's span.
    """
    event = epoch_us(table.event_timestamp, types[table.event_timestamp])
    if table.created_timestamp:
        created = epoch_us(table.created_timestamp, types[table.created_timestamp])
    else:  # no tie-break column: ties are arbitrary, as in Feast
        created = event
    ttl_us = table.ttl // datetime.timedelta(microseconds=1)
    if window is None:  # no label has an as-of time
        where = "false"
    else:
        where = f"{event} <= {window[1]}"
        if ttl_us > 0:
            where += f" AND {event} >= {window[0] - ttl_us}"
    key = None
    if guess and window is not None and ttl_us > 0:
        key = _guessed_key(con, source, where, event, created, (window[0] - ttl_us, window[1]))
    if key is None:
        key = _stats_key(con, source, where, event, created)
    columns = ", ".join(quote(c) for c in dict.fromkeys((*table.keys, *table.features)))
    return Side(
        f"SELECT {columns}, {key.feature} AS {SK} FROM {source} WHERE {where}",
        key.label,
        key.event,
    )


def _guessed_key(
    con: duckdb.DuckDBPyConnection,
    source: str,
    where: str,
    event: str,
    created: str,
    events: tuple[int, int],
) -> _Key | None:
    """A guarded BIGINT key from the event span ``events`` and a sample's lags, or None.

    The lag range is the widest the span leaves room for, centred on the sample's, so lags
    somewhat outside the sample still pass the guard; a sample with one created time for every
    row guesses a table written at once (keyed on event time alone, as :func:`_stats_key` does).
    """
    lag = f"({created} - {event})"
    sample = f"SELECT {event} AS e, {created} AS c FROM {source} WHERE {where} LIMIT {SAMPLE_ROWS}"
    seen, first, last, nulls, low, high = con.sql(
        f"SELECT count(*), min(c), max(c), count(*) - count(c), min(c - e), max(c - e)"
        f" FROM ({sample})"
    ).fetchall()[0]
    if not seen:
        return None  # no eligible row in the sample: the statistics path is as cheap
    if first == last and not nulls:
        key = _bigint_key(event, "0", 1, *events, 0, 0)
        fits = f"{created} = {first}"
    else:
        width = _BIGINT_MAX // (events[1] - events[0] + 2)  # the most room the span leaves
        if low is None or high - low > width - 2:
            return None
        low -= (width - 2 - (high - low)) // 2
        key = _bigint_key(event, lag, 1, *events, low, low + width - 2)
        fits = f"{created} IS NULL OR {lag} BETWEEN {low} AND {low + width - 2}"
    if key is None:
        return None
    guarded = f"CASE WHEN {fits} THEN {key.feature} ELSE error('{GUARD}') END"
    return _Key(guarded, key.label, key.event)


def _stats_key(
    con: duckdb.DuckDBPyConnection, source: str, where: str, event: str, created: str
) -> _Key:
    """The narrowest exact key one min/max scan of the eligible rows allows; never fails."""
    lag = f"({created} - {event})"
    *stats, first_created, last_created, null_created = con.sql(
        f"SELECT min({event}), max({event}), min({lag}), max({lag}), min({created}),"
        f" max({created}), count(*) - count({created}) FROM {source} WHERE {where}"
    ).fetchall()[0]
    if first_created is not None and first_created == last_created and not null_created:
        # one created time for every row (a table written at once): it breaks no tie, so the
        # key is the event time alone, which always fits a BIGINT
        created, lag, stats = event, "0", [stats[0], stats[1], 0, 0]
    packed = _bigint_key(event, lag, 1, *stats)
    if packed is None and stats[0] is not None:  # one more scan, only when it could pay off
        unit = _time_unit(con, source, where, event, created)
        packed = _bigint_key(event, lag, unit, *stats) if unit > 1 else None
    if packed is None:  # the created half is biased non-negative; a null one ranks lowest
        tie = f"coalesce({created}::HUGEINT + {_BIAS}, 0)"
        packed = _Key(
            f"{event}::HUGEINT * {_LOW} + {tie}",
            f"{US}::HUGEINT * {_LOW} + {_LOW - 1}",
            _floor_div("{key}", _LOW),
        )
    return packed


def _time_unit(
    con: duckdb.DuckDBPyConnection, source: str, where: str, event: str, created: str
) -> int:
    """The coarsest of ``_UNITS`` (in µs) dividing every event and created time, else 1.

    Second- or millisecond-resolution data is common, and counting in its unit frees the bits a
    BIGINT key needs; checking costs a scan, so it runs only when microseconds do not fit.
    """
    checks = ", ".join(
        f"bool_and({event} % {g} = 0 AND coalesce({created} % {g} = 0, true))" for g in _UNITS
    )
    aligned = con.sql(f"SELECT {checks} FROM {source} WHERE {where}").fetchall()[0]
    return next((g for g, ok in zip(_UNITS, aligned, strict=True) if ok), 1)


def _units(value: str, unit: int) -> str:
    """SQL for ``value`` (a whole multiple of ``unit``) counted in units."""
    return value if unit == 1 else f"({value} // {unit})"


def _floor_div(value: str, unit: int) -> str:
    """SQL flooring integer division (DuckDB's ``//`` truncates toward zero), none for 1."""
    if unit == 1:
        return value
    return f"(({value} - ((({value} % {unit}) + {unit}) % {unit})) // {unit})"


def _bigint_key(
    event: str,
    lag: str,
    unit: int,
    min_event: int | None,
    max_event: int | None,
    min_lag: int | None,
    max_lag: int | None,
) -> _Key | None:
    """The key packing (event, created) into a BIGINT, or None if unsafe.

    Times count in ``unit`` microseconds, the coarsest unit dividing every event and created time
    (whole seconds or milliseconds are common): exact, and it leaves more bits. The feature key
    is ``(event - origin) * width + (lag - min_lag + 1)``, 0 in the low part for a null created
    time, so it orders exactly like (event, created) within one event time, and ``key // width``
    is the event's offset from the origin (every key is positive). The label's floored as-of
    time is clamped into ``[origin, max_event]``, which keeps every comparison's outcome and the
    key small; the TTL test uses the exact, unclamped time.
    """
    if min_event is None or max_event is None:
        return None  # no rows with an event time: nothing can match anyway
    low, high = (0, 0) if min_lag is None or max_lag is None else (min_lag, max_lag)
    origin, width = min_event // unit - 1, (high - low) // unit + 2
    if (max_event // unit - origin + 1) * width > _BIGINT_MAX:  # bounds every key, both sides
        return None
    # events and lags are whole multiples of unit, so plain division is exact for them
    tie = f"coalesce({_units(lag, unit)} - {low // unit - 1}, 0)"
    key = f"({_units(event, unit)} - {origin}) * {width} + {tie}"
    # greatest() skips nulls: a null as-of time becomes the origin, below every row, no match
    clamped = f"least(greatest({_floor_div(US, unit)}, {origin}), {max_event // unit})"
    event_us = f"(({{key}} // {width} + {origin}) * {unit})"
    return _Key(key, f"({clamped} - {origin}) * {width} + {width - 1}", event_us)
