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
pair is folded into one integer sort key that orders exactly like it
(:mod:`assets.training.pit_keys`); the label side gets the largest key at its as-of time. One
``ASOF LEFT JOIN`` per table then finds the winner in a single pass, and features whose event
time (read back out of the key) is older than the TTL are nulled: the winner is the newest
eligible row, so if it is stale every older one is too. The key is first guessed without reading
the feature table and guarded row by row; a wrong guess raises, and the join is redone with a key
from the table's statistics, so every answer is exact.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import duckdb
import numpy as np
import pandas as pd

from assets.training.pit_keys import GUARD, SK, US, Side, epoch_us, quote, table_side
from runtime import layout

ROW = "__pit_row"  # label row number, to restore the labels' order
_T = TypeVar("_T")


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
    settings) outside an explicit transaction (a wrong key guess raises inside DuckDB before
    the join is redone); the temporary views registered on it are dropped before returning.
    """
    con = connection if connection is not None else duckdb.connect()
    try:
        if isinstance(labels, str):
            labels = con.sql(f"SELECT * FROM {_parquet(labels)}").df()
        check_names(labels, tables, as_of, prefix_features)
        found = _joined(con, labels, tables, as_of, prefix_features, lambda sql: con.sql(sql).df())
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
    path = target.replace("'", "''")
    con = duckdb.connect()
    try:
        _joined(
            con,
            labels,
            tables,
            as_of,
            prefix_features,
            lambda sql: con.sql(f"COPY ({sql}) TO '{path}' (FORMAT parquet)"),
            rows,
        )
    finally:
        con.close()
    return len(labels)


def _joined(
    con: duckdb.DuckDBPyConnection,
    labels: pd.DataFrame,
    tables: Sequence[FeatureTable],
    as_of: str,
    prefix_features: bool,
    run: Callable[[str], _T],
    rows: np.ndarray | None = None,
) -> _T:
    """``run`` on the join statement with guessed keys; after a wrong guess (DuckDB raised
    ``GUARD``, see :mod:`assets.training.pit_keys`), again with keys from the tables' statistics.
    """
    try:
        with _join_sql(con, labels, tables, as_of, prefix_features, rows, guess=True) as sql:
            return run(sql)
    except duckdb.InvalidInputException as error:
        if GUARD not in str(error):
            raise
    with _join_sql(con, labels, tables, as_of, prefix_features, rows, guess=False) as sql:
        return run(sql)


@contextmanager
def _join_sql(
    con: duckdb.DuckDBPyConnection,
    labels: pd.DataFrame,
    tables: Sequence[FeatureTable],
    as_of: str,
    prefix_features: bool,
    rows: np.ndarray | None,
    guess: bool,
) -> Iterator[str]:
    """The join statement over views registered on ``con``, which are dropped afterwards."""
    suffix = uuid.uuid4().hex[:12]
    registered: list[str] = []
    try:
        label_view = f"__pit_labels_{suffix}"
        con.register(label_view, _label_keys(labels, tables, as_of, rows))
        registered.append(label_view)
        label_type = _check_timestamps(con, quote(label_view), "labels", [as_of])[as_of]
        as_of_us = epoch_us(as_of, label_type)
        window = con.sql(f"SELECT min({as_of_us}), max({as_of_us}) FROM {quote(label_view)}")
        lo, hi = window.fetchall()[0]
        sides = []
        for i, table in enumerate(tables):
            source = _source(con, table, f"__pit_table{i}_{suffix}", registered)
            types = check_table(con, source, table)
            span = None if lo is None else (lo, hi)
            sides.append(table_side(con, table, source, types, span, guess))
        yield _query(quote(label_view), tables, sides, as_of_us, prefix_features)
    finally:
        for view in registered:
            con.unregister(view)


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
    return pd.DataFrame({ROW: numbers, **columns}, copy=False)  # no consolidating copy either


def _source(
    con: duckdb.DuckDBPyConnection, table: FeatureTable, view: str, registered: list[str]
) -> str:
    """The SQL that scans ``table``: its registered DataFrame, or its parquet files directly."""
    if isinstance(table.frame, str):
        return _parquet(table.frame)
    con.register(view, table.frame)
    registered.append(view)
    return quote(view)


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
    relation = con.sql(f"SELECT {', '.join(quote(c) for c in columns)} FROM {source}")
    types = {}
    for column, dtype in zip(columns, relation.types, strict=True):
        if not str(dtype).startswith("TIMESTAMP"):
            raise ValueError(f"{what}: column {column!r} is {dtype}, not a timestamp")
        types[column] = str(dtype)
    return types


def _query(
    label_view: str,
    tables: Sequence[FeatureTable],
    sides: Sequence[Side],
    as_of_us: str,
    prefix: bool,
) -> str:
    """One statement: the labels ASOF-joined to every table, stale winners nulled."""
    keys = ", ".join(quote(k) for k in dict.fromkeys(k for t in tables for k in t.keys))
    label_keys = ", ".join(f"{side.label_key} AS {SK}{i}" for i, side in enumerate(sides))
    ctes = [
        f"u AS (SELECT {ROW}, {keys}, {as_of_us} AS {US} FROM {label_view})",
        f"l AS (SELECT *, {label_keys} FROM u)",
    ]
    selects, joins = [f"l.{ROW}"], []
    for i, (table, side) in enumerate(zip(tables, sides, strict=True)):
        ctes.append(f"f{i} AS ({side.feature_sql})")
        on = " AND ".join(f"l.{quote(k)} = f{i}.{quote(k)}" for k in table.keys)
        joins.append(f"ASOF LEFT JOIN f{i} ON {on} AND l.{SK}{i} >= f{i}.{SK}")
        ttl_us = table.ttl // datetime.timedelta(microseconds=1)
        fresh = f"{side.event.format(key=f'f{i}.{SK}')} >= l.{US} - {ttl_us}"
        for feature, name in zip(table.features, table.output_names(prefix), strict=True):
            value = f"f{i}.{quote(feature)}"
            if ttl_us > 0:
                value = f"CASE WHEN {fresh} THEN {value} END"
            selects.append(f"{value} AS {quote(name)}")
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
