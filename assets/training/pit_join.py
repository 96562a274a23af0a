"""Point-in-time (PIT) join of label rows to feature tables, in DuckDB.

Each label row gets, from each feature table, the values of the row that was the latest known at
the label's as-of time, so that no training example sees a value from its future.

Semantics, chosen to match Feast's DuckDB (ibis) offline store, feast 0.67, exactly:

* A feature row is eligible iff its keys equal the label's (a null key never matches) and
  ``as_of - ttl <= event_timestamp <= as_of``. Both ends are inclusive: Feast keeps
  ``event_timestamp + ttl >= as_of``. A zero TTL means "never stale", Feast's convention.
* Among eligible rows the greatest ``(event_timestamp, created_timestamp)`` pair wins. A null
  created timestamp ranks below every real one. Without a created column a tie on event time is
  arbitrary, as in Feast.
* A label row with no eligible row is kept, with nulls for that table's features (Feast's Dask
  file store drops such rows). Rows come back in the labels' order, duplicates included.
* Times are compared in UTC microseconds (Feast casts to ``TIMESTAMPTZ``, also microseconds);
  tz-naive timestamps are read as UTC. A null as-of time matches nothing.

How: DuckDB's ``ASOF JOIN`` returns one arbitrary row among rows with equal timestamps, so the
pair is folded into one integer sort key that orders exactly like it; the label side gets the
largest key at its as-of time. One ``ASOF LEFT JOIN`` per table then finds the winner in a single
pass, and features whose event time is older than the TTL are nulled: the winner is the newest
eligible row, so if it is stale every older one is too.

Only feature rows with ``min(as_of) - ttl <= event <= max(as_of)`` take part: later ones are
never eligible, older ones are stale for every label. The key is a BIGINT,
``(event - origin) * width + (created - event - min_lag + 1)``, counted in seconds or
milliseconds when every time is whole in that unit, when one min/max scan of those rows shows it
fits (event span times created-lag span under 2**63: e.g. 30 days of microsecond events created
within 3.5 s, or of millisecond events created within 40 days); otherwise a HUGEINT,
``event_us * 2**64 + (created_us + 2**63)``. Both are exact; the BIGINT one joins about as fast
as a plain timestamp ASOF, the 16-byte one took about twice as long at 10M rows.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd

from runtime import layout

ROW = "__pit_row"  # label row number, to restore the labels' order
_US = "__pit_us"  # label as-of time, UTC microseconds
_SK = "__pit_sk"  # the (event, created) sort key
_EV = "__pit_ev"  # feature event time, UTC microseconds, for the TTL test
_BIGINT_MAX = (1 << 63) - 1  # packed keys, and every product on the way to them, stay below
_UNITS = (1_000_000, 1_000)  # coarser time units tried for BIGINT keys: seconds, milliseconds
_LOW = 1 << 64  # room for the created half of the key
_BIAS = 1 << 63  # makes signed created microseconds non-negative


@dataclass(frozen=True)
class FeatureTable:
    """One feature view: where its rows are and how to join them.

    ``frame`` is a DataFrame or a parquet path or glob; a path is scanned by DuckDB directly, so
    only the columns the join needs are read, never the whole file into pandas.
    """

    name: str
    frame: pd.DataFrame | str
    keys: tuple[str, ...]
    features: tuple[str, ...]
    ttl: datetime.timedelta
    event_timestamp: str = "event_timestamp"
    created_timestamp: str | None = "created_timestamp"

    def output_names(self, prefix: bool) -> list[str]:
        """Names of the feature columns in the result (``view__feature`` when prefixed, as Feast)."""
        return [layout.feature_column(self.name, f) if prefix else f for f in self.features]


def point_in_time_join(
    labels: pd.DataFrame | str,
    tables: Sequence[FeatureTable],
    as_of: str = "event_timestamp",
    prefix_features: bool = False,
    connection: duckdb.DuckDBPyConnection | None = None,
) -> pd.DataFrame:
    """Return ``labels`` with every table's features as of each row's ``as_of`` time.

    The result has the labels' rows, in order and with their index, then each table's feature
    columns in the order given. ``connection`` lets a caller reuse a DuckDB connection (and its
    settings); the temporary views registered on it are dropped before returning.
    """
    con = connection if connection is not None else duckdb.connect()
    try:
        if isinstance(labels, str):
            labels = con.sql(f"SELECT * FROM {_parquet(labels)}").df()
        check_names(labels, tables, as_of, prefix_features)
        with _join_sql(con, labels, tables, as_of, prefix_features) as sql:
            found = con.sql(sql).df()
    finally:
        if connection is None:
            con.close()
    return assemble(labels, found)


def write_join_rows(
    labels: pd.DataFrame,
    rows: np.ndarray,
    tables: Sequence[FeatureTable],
    target: str,
    as_of: str,
    prefix_features: bool,
) -> int:
    """Write the join's answer for ``labels`` to Parquet: ``ROW`` (from ``rows``, the labels'
    numbers in a larger frame) and every feature column; the rows written.

    DuckDB writes the file itself, so each column keeps the SQL type the one-pass join gives
    it: the files of several pieces of one label frame, read back together, convert to pandas
    exactly as :func:`point_in_time_join`'s answer does (a piece's pandas copy could differ,
    e.g. an integer column without nulls in one piece and with nulls in another).
    """
    con = duckdb.connect()
    try:
        with _join_sql(con, labels, tables, as_of, prefix_features, rows) as sql:
            path = target.replace("'", "''")
            con.sql(f"COPY ({sql}) TO '{path}' (FORMAT parquet)")
    finally:
        con.close()
    return len(labels)


@contextmanager
def _join_sql(
    con: duckdb.DuckDBPyConnection,
    labels: pd.DataFrame,
    tables: Sequence[FeatureTable],
    as_of: str,
    prefix_features: bool,
    rows: np.ndarray | None = None,
) -> Iterator[str]:
    """The join statement over views registered on ``con``, which are dropped afterwards."""
    suffix = uuid.uuid4().hex[:12]
    registered: list[str] = []
    try:
        label_view = f"__pit_labels_{suffix}"
        con.register(label_view, _label_keys(labels, tables, as_of, rows))
        registered.append(label_view)
        label_type = _check_timestamps(con, _quote(label_view), "labels", [as_of])[as_of]
        as_of_us = _epoch_us(as_of, label_type)
        window = con.sql(f"SELECT min({as_of_us}), max({as_of_us}) FROM {_quote(label_view)}")
        lo, hi = window.fetchall()[0]
        sides = []
        for i, table in enumerate(tables):
            source = _source(con, table, f"__pit_table{i}_{suffix}", registered)
            types = check_table(con, source, table)
            sides.append(_side(con, table, source, types, None if lo is None else (lo, hi)))
        yield _query(_quote(label_view), tables, sides, as_of_us, prefix_features)
    finally:
        for view in registered:
            con.unregister(view)


def _quote(name: str) -> str:
    """Quote an identifier for SQL, so any column name is safe."""
    return '"' + name.replace('"', '""') + '"'


def _parquet(path: str) -> str:
    """A ``read_parquet`` call on ``path``, with the path as a SQL string literal."""
    return "read_parquet('" + path.replace("'", "''") + "')"


def check_names(
    labels: pd.DataFrame, tables: Sequence[FeatureTable], as_of: str, prefix: bool
) -> None:
    """Fail early, naming the table, on missing label columns and colliding output names."""
    if as_of not in labels.columns:
        raise ValueError(f"labels have no as-of column {as_of!r}")
    seen = {str(c) for c in labels.columns}
    for table in tables:
        if not table.keys or not table.features:
            raise ValueError(f"feature table {table.name!r} needs at least one key and feature")
        missing = [k for k in table.keys if k not in labels.columns]
        if missing:
            raise ValueError(f"labels lack join key(s) {missing} of feature table {table.name!r}")
        for name in table.output_names(prefix):
            if name in seen:
                hint = "" if prefix else "; pass prefix_features=True"
                raise ValueError(f"output column {name!r} of {table.name!r} exists already{hint}")
            seen.add(name)


def _label_keys(
    labels: pd.DataFrame,
    tables: Sequence[FeatureTable],
    as_of: str,
    rows: np.ndarray | None = None,
) -> pd.DataFrame:
    """The few label columns the join reads, plus a row number (``rows``, else 0..n-1); never a
    copy of all labels."""
    needed = dict.fromkeys([as_of, *(k for t in tables for k in t.keys)])
    columns = {c: labels[c].array for c in needed}  # .array: no index alignment, no copy
    numbers = np.arange(len(labels), dtype=np.int64) if rows is None else rows.astype(np.int64)
    return pd.DataFrame({ROW: numbers, **columns})


def _source(
    con: duckdb.DuckDBPyConnection, table: FeatureTable, view: str, registered: list[str]
) -> str:
    """The SQL that scans ``table``: its registered DataFrame, or its parquet files directly."""
    if isinstance(table.frame, str):
        return _parquet(table.frame)
    con.register(view, table.frame)
    registered.append(view)
    return _quote(view)


def check_table(con: duckdb.DuckDBPyConnection, source: str, table: FeatureTable) -> dict[str, str]:
    """Fail on missing columns or non-datetime timestamps, naming the table; return their types."""
    columns = con.sql(f"SELECT * FROM {source}").columns
    stamps = [c for c in (table.event_timestamp, table.created_timestamp) if c]
    missing = [c for c in (*table.keys, *table.features, *stamps) if c not in columns]
    if missing:
        raise ValueError(f"feature table {table.name!r} has no column(s) {missing}")
    return _check_timestamps(con, source, f"feature table {table.name!r}", stamps)


def _check_timestamps(
    con: duckdb.DuckDBPyConnection, source: str, what: str, columns: Sequence[str]
) -> dict[str, str]:
    """Timestamps must be timestamps: strings or epoch numbers would compare wrongly or slowly.

    Returns each column's DuckDB type, which decides how it becomes UTC microseconds.
    """
    relation = con.sql(f"SELECT {', '.join(_quote(c) for c in columns)} FROM {source}")
    types = {}
    for column, dtype in zip(columns, relation.types, strict=True):
        if not str(dtype).startswith("TIMESTAMP"):
            raise ValueError(f"{what}: column {column!r} is {dtype}, not a timestamp")
        types[column] = str(dtype)
    return types


def _epoch_us(column: str, dtype: str) -> str:
    """SQL for UTC microseconds of a timestamp column of type ``dtype``, never session-zoned.

    ``epoch_us`` takes naive timestamps of any unit and microsecond ``TIMESTAMPTZ``; nanosecond
    zoned times (pandas writes them to parquet) are floored from ``epoch_ns``, since casting them
    to ``TIMESTAMPTZ`` would round and casting to naive ``TIMESTAMP`` would apply the session zone.
    """
    if dtype in ("TIMESTAMPTZ_NS", "TIMESTAMP_NS WITH TIME ZONE"):
        ns = f"epoch_ns({_quote(column)})"
        return f"(({ns} - ((({ns} % 1000) + 1000) % 1000)) // 1000)"
    return f"epoch_us({_quote(column)})"


@dataclass(frozen=True)
class _Side:
    """One feature table's side of the join: its rows with keys, and how label keys compare.

    ``feature_sql`` selects keys, features, the event time ``_EV`` and the sort key ``_SK``;
    ``label_key`` is the SQL (over the label's as-of microseconds ``_US``) for the largest key
    at that time.
    """

    feature_sql: str
    label_key: str


def _side(
    con: duckdb.DuckDBPyConnection,
    table: FeatureTable,
    source: str,
    types: dict[str, str],
    window: tuple[int, int] | None,
) -> _Side:
    """The table's rows that can matter, and the narrowest exact key one stats scan allows.

    Only rows with ``min(as_of) - ttl <= event <= max(as_of)`` are kept (``window`` is the labels'
    as-of range): a later row is never eligible, an older one is stale for every label, so
    dropping them changes no answer but shrinks the sort and the key's span.
    """
    event = _epoch_us(table.event_timestamp, types[table.event_timestamp])
    if table.created_timestamp:
        created = _epoch_us(table.created_timestamp, types[table.created_timestamp])
    else:  # no tie-break column: ties are arbitrary, as in Feast
        created = event
    ttl_us = table.ttl // datetime.timedelta(microseconds=1)
    if window is None:  # no label has an as-of time
        where = "false"
    else:
        where = f"{event} <= {window[1]}"
        if ttl_us > 0:
            where += f" AND {event} >= {window[0] - ttl_us}"
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
        packed = (f"{event}::HUGEINT * {_LOW} + {tie}", f"{_US}::HUGEINT * {_LOW} + {_LOW - 1}")
    key, label_key = packed
    columns = ", ".join(_quote(c) for c in dict.fromkeys((*table.keys, *table.features)))
    return _Side(
        f"SELECT {columns}, {event} AS {_EV}, {key} AS {_SK} FROM {source} WHERE {where}",
        label_key,
    )


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
) -> tuple[str, str] | None:
    """(feature key, label key) SQL packing (event, created) into a BIGINT, or None if unsafe.

    Times count in ``unit`` microseconds, the coarsest unit dividing every event and created time
    (whole seconds or milliseconds are common): exact, and it leaves more bits. The feature key
    is ``(event - origin) * width + (lag - min_lag + 1)``, 0 in the low part for a null created
    time, so it orders exactly like (event, created) within one event time. The label's floored
    as-of time is clamped into ``[origin, max_event]``, which keeps every comparison's outcome
    and the key small; the TTL test uses the exact, unclamped time.
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
    clamped = f"least(greatest({_floor_div(_US, unit)}, {origin}), {max_event // unit})"
    return key, f"({clamped} - {origin}) * {width} + {width - 1}"


def _query(
    label_view: str,
    tables: Sequence[FeatureTable],
    sides: Sequence[_Side],
    as_of_us: str,
    prefix: bool,
) -> str:
    """One statement: the labels ASOF-joined to every table, stale winners nulled."""
    keys = ", ".join(_quote(k) for k in dict.fromkeys(k for t in tables for k in t.keys))
    label_keys = ", ".join(f"{side.label_key} AS {_SK}{i}" for i, side in enumerate(sides))
    ctes = [
        f"u AS (SELECT {ROW}, {keys}, {as_of_us} AS {_US} FROM {label_view})",
        f"l AS (SELECT *, {label_keys} FROM u)",
    ]
    selects, joins = [f"l.{ROW}"], []
    for i, (table, side) in enumerate(zip(tables, sides, strict=True)):
        ctes.append(f"f{i} AS ({side.feature_sql})")
        on = " AND ".join(f"l.{_quote(k)} = f{i}.{_quote(k)}" for k in table.keys)
        joins.append(f"ASOF LEFT JOIN f{i} ON {on} AND l.{_SK}{i} >= f{i}.{_SK}")
        ttl_us = table.ttl // datetime.timedelta(microseconds=1)
        fresh = f"f{i}.{_EV} >= l.{_US} - {ttl_us}"
        for feature, name in zip(table.features, table.output_names(prefix), strict=True):
            value = f"f{i}.{_quote(feature)}"
            if ttl_us > 0:
                value = f"CASE WHEN {fresh} THEN {value} END"
            selects.append(f"{value} AS {_quote(name)}")
    return f"WITH {', '.join(ctes)} SELECT {', '.join(selects)} FROM l {' '.join(joins)}"


def assemble(labels: pd.DataFrame, found: pd.DataFrame) -> pd.DataFrame:
    """Put the joined rows (``ROW`` and feature columns, each label row once, in any order) back
    in label order beside the labels (an O(n) gather, cheaper than ORDER BY)."""
    rows = found[ROW].to_numpy()
    order = np.empty(len(rows), dtype=np.int64)
    order[rows] = np.arange(len(rows), dtype=np.int64)
    features = found.drop(columns=ROW).take(order)
    features.index = labels.index
    return pd.concat([labels, features], axis=1)
