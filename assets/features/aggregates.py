"""Windowed per-entity aggregates that are exact at every moment, computed in one DuckDB pass.

A windowed aggregate of an entity changes only when an event enters its window (at the event's
time) or leaves it (at event time + window). So the feature table holds one row per entity at
each of those change points, stamped with the moment the value became true. An as-of join (Feast's
or ours) then returns the exact value at any label time — a 1h velocity count drops back to 0
an hour after the last transaction instead of repeating a stale count.

How it is computed: events (one stream per time axis) and "expiry probes" (event time + window +
1µs) are unioned; every aggregate is a window function over that stream with a RANGE frame
``[t - window, t]`` that only counts rows of its own axis; one row per (entity, time) is kept.
Windows include both ends at microsecond resolution.

Hopped windows (a view's ``hop``, Chronon's sawtooth) round the tail down to the hop, so the
events of one hop leave together: fewer probes, and lookups exact for that definition. A row that
repeats the row before it is left out within the view's ttl. Both are in
:mod:`assets.features.window_sql`.

The time axis of an aggregate is when its input became known: the event time, except for an
outcome that arrives later (a label with ``available_at``, fraud chargebacks, or a fixed
``available_after`` delay, and the label's ``outcomes`` columns), whose aggregates move when it
arrives (``assets.features.availability``). That is what keeps a "past frauds of this card"
feature from leaking labels not yet known.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import duckdb
import pandas as pd

from assets.features.window_sql import compacted_sql, expiry_sql, frame_sql, within_sql
from configs.schema.base import parse_duration
from configs.schema.stages import AggregateSpec, FeatureViewSpec
from runtime.shards import (
    ShardEngine,
    ShardFunction,
    ShardResult,
    read_outputs,
    shard_count,
    shard_workspace,
    split_frame,
    split_parquet,
)

EVENT_TIMESTAMP = "event_timestamp"
CREATED_TIMESTAMP = "created_timestamp"
FLOAT_AGGREGATES = ("sum", "mean", "min", "max")  # cast to DOUBLE by _expression


@dataclass(frozen=True)
class AggregatePlan:
    """One output column: which aggregate, over which window, on which time axis."""

    name: str
    aggregate: AggregateSpec
    window: str
    axis: str
    hop_ns: int | None = None  # the tail's hop in nanoseconds; None: an exact window
    ttl_seconds: int | None = None  # the view's ttl; None: every change point kept, repeats too

    @property
    def seconds(self) -> int:
        return int(parse_duration(self.window).total_seconds())

    @property
    def window_name(self) -> str:
        """The SQL WINDOW of this plan's frame: one per (window, hop)."""
        return f"w{self.seconds}" + (f"h{self.hop_ns}" if self.hop_ns else "")


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def plan_aggregates(
    view: FeatureViewSpec,
    axis_of: dict[str, str],
    default_axis: str,
    *,
    every_change_point: bool = False,
) -> list[AggregatePlan]:
    """Expand a view's aggregates into one plan per output column.

    The plans carry the view's ttl, which lets the table leave out rows that repeat the row
    before; ``every_change_point`` keeps them (the baseline the tests and benchmarks compare to).
    """
    ttl = None if every_change_point else int(parse_duration(view.ttl).total_seconds())
    plans = []
    for aggregate in view.aggregates:
        axis = axis_of.get(aggregate.column or "", default_axis)
        for window, name in zip(aggregate.windows, aggregate.feature_names(), strict=True):
            hop = view.window_hop(window)
            hop_ns = None if hop is None else pd.Timedelta(hop).value
            plans.append(AggregatePlan(name, aggregate, window, axis, hop_ns, ttl))
    return plans


def _expression(plan: AggregatePlan, window_name: str) -> str:
    """SQL for one aggregate over the stream; rows of other axes and probes count as absent."""
    on_axis = f"axis = '{plan.axis}'"
    column = _quote(plan.aggregate.column) if plan.aggregate.column else "NULL"
    value = f"CASE WHEN {on_axis} THEN {column} END"
    agg = plan.aggregate.agg
    if agg == "count":
        return f"CAST(sum(CASE WHEN {on_axis} THEN 1 ELSE 0 END) OVER {window_name} AS BIGINT)"
    if agg == "distinct_count":
        return f"CAST(count(DISTINCT {value}) OVER {window_name} AS BIGINT)"
    if agg == "time_since_last":
        return f"max(CASE WHEN {on_axis} THEN t END) OVER {window_name}"
    if agg == "sum":  # an empty window sums to 0; null stays "no history within the TTL"
        return f"CAST(coalesce(sum({value}) OVER {window_name}, 0) AS DOUBLE)"
    sql = {"mean": "avg", "min": "min", "max": "max"}[agg]
    return f"CAST({sql}({value}) OVER {window_name} AS DOUBLE)"


def _last_n_sql(plan: AggregatePlan, keys: str, probe_source: str) -> tuple[str, str]:
    """A CTE of the last n values per entity at each of its events, and the column reading it.

    A ROWS frame bounds each row's list to n values (a RANGE list over a 30-day window would hold
    thousands per row); the values older than the window are filtered at each stream row. Among
    events at the same moment the last one in frame order is kept: its frame holds them all.
    """
    n = plan.aggregate.n
    column = _quote(plan.aggregate.column or "")
    cte = f"""recent_{plan.name} AS (
        SELECT * EXCLUDE (rn) FROM (
            SELECT {keys}, t AS recent_t, list({{'t': t, 'v': {column}}}) OVER wr AS recent,
                   row_number() OVER wr AS rn
            FROM {probe_source} WHERE axis = '{plan.axis}'
            WINDOW wr AS (PARTITION BY {keys} ORDER BY t, {column}
                          ROWS BETWEEN {n - 1} PRECEDING AND CURRENT ROW))
        QUALIFY rn = max(rn) OVER (PARTITION BY {keys}, recent_t))"""
    read = (
        f"list_transform(list_filter(r_{plan.name}.recent,"
        f" lambda x: {within_sql(plan.seconds, plan.hop_ns, 'x.t', 's.t')}), lambda x: x.v)"
        f" AS {_quote(plan.name)}"
    )
    return cte, read


def aggregate_sql(
    events: str,
    keys: Sequence[str],
    plans: Sequence[AggregatePlan],
    until: str | None = None,
) -> str:
    """The whole query: points per axis, expiry probes, windowed aggregates, one row per (key, t).

    ``until`` (a SQL timestamp literal) is the end of the data: nothing is known after it — not a
    label that arrives later, not an expiry that would happen if no event came — so points and
    probes past it are left out. For long windows that removes most probes.

    A row that repeats the row before it is left out when the plans carry their view's ttl
    (:func:`assets.features.window_sql.compacted_sql`); plans without one keep every change point.
    """
    known = f" AND t <= {until}" if until else ""
    key_list = ", ".join(_quote(k) for k in keys)
    not_null = " AND ".join(f"{_quote(k)} IS NOT NULL" for k in keys)
    columns = sorted({p.aggregate.column for p in plans if p.aggregate.column})
    value_list = "".join(f", {_quote(c)}" for c in columns)
    null_values = "".join(f", NULL AS {_quote(c)}" for c in columns)
    axes = sorted({p.axis for p in plans})
    points = " UNION ALL ".join(
        f"SELECT {key_list}, {_quote(a)} AS t, '{a}' AS axis{value_list} FROM {events}"
        f" WHERE {not_null} AND {_quote(a)} IS NOT NULL"
        + (f" AND {_quote(a)} <= {until}" if until else "")
        for a in axes
    )
    expiries = sorted(
        {(p.axis, expiry_sql(p.seconds, p.hop_ns)) for p in plans if p.aggregate.agg != "last_n"}
    )
    probes = (
        " UNION ".join(
            f"SELECT DISTINCT {key_list}, t FROM (SELECT {key_list}, {expiry} AS t"
            f" FROM points WHERE axis = '{axis}') WHERE true{known}"
            for axis, expiry in expiries
        )
        or f"SELECT {key_list}, t FROM points WHERE false"
    )
    frames = {p.window_name: frame_sql(p.seconds, p.hop_ns) for p in plans}
    window_defs = ", ".join(
        f"{name} AS (PARTITION BY {key_list} {frame})" for name, frame in sorted(frames.items())
    )
    windowed = [p for p in plans if p.aggregate.agg != "last_n"]
    selects = "".join(f", {_expression(p, p.window_name)} AS {_quote(p.name)}" for p in windowed)
    ttls = {p.ttl_seconds for p in plans}
    ttl = min(ttls) if windowed and None not in ttls else None
    columns = [(_quote(p.name), p.aggregate.agg in FLOAT_AGGREGATES) for p in plans]
    recent = [_last_n_sql(p, key_list, "points") for p in plans if p.aggregate.agg == "last_n"]
    ctes = "".join(f", {cte}" for cte, _ in recent)
    joins = "".join(
        f" ASOF LEFT JOIN recent_{p.name} r_{p.name} ON "
        + " AND ".join(f"s.{_quote(k)} = r_{p.name}.{_quote(k)}" for k in keys)
        + f" AND s.t >= r_{p.name}.recent_t"
        for p in plans
        if p.aggregate.agg == "last_n"
    )
    reads = "".join(f", {read}" for _, read in recent)
    stream_select = f"SELECT DISTINCT ON ({key_list}, t) {key_list}, t{selects} FROM stream ORDER BY {key_list}, t"
    if not window_defs:
        stream_select = f"SELECT DISTINCT {key_list}, t FROM stream ORDER BY {key_list}, t"
    else:
        stream_select = stream_select.replace(
            " FROM stream ", f" FROM stream WINDOW {window_defs} "
        )
    return f"""
        WITH points AS ({points}),
        probes AS ({probes}),
        stream AS (SELECT * FROM points UNION ALL SELECT {key_list}, t, NULL AS axis{null_values} FROM probes),
        windowed AS ({stream_select}){ctes}
        {compacted_sql(f"SELECT s.*{reads} FROM windowed s{joins}", key_list, columns, ttl)}
        ORDER BY {", ".join(_quote(k) for k in keys)}, t
    """


# Entities per DuckDB query: window operators hold their whole input, so large event logs are cut
# into groups of whole entities (by key hash) and each group is aggregated on its own.
CHUNK_EVENTS = 1_000_000


def _run_in_chunks(
    events: pd.DataFrame, keys: Sequence[str], plans: Sequence[AggregatePlan], end: str | None
) -> pd.DataFrame:
    """The aggregate query over groups of whole entities: the same rows, bounded memory."""
    chunks = max(1, -(-len(events) // CHUNK_EVENTS))
    key_hash = f"hash({', '.join(_quote(k) for k in keys)}) % {chunks}"
    connection = duckdb.connect()
    try:
        connection.register("events_input", events)
        parts = []
        for chunk in range(chunks):
            source = (
                "events_input"
                if chunks == 1
                else f"(SELECT * FROM events_input WHERE {key_hash} = {chunk})"
            )
            parts.append(connection.sql(aggregate_sql(source, keys, plans, end)).df())
    finally:
        connection.close()
    return parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)


def _check_columns(
    events: pd.DataFrame, keys: Sequence[str], plans: Sequence[AggregatePlan]
) -> None:
    missing = [
        c
        for c in [
            *keys,
            *{p.axis for p in plans},
            *{p.aggregate.column for p in plans if p.aggregate.column},
        ]
        if c not in events
    ]
    if missing:
        raise ValueError(f"events lack column(s) {missing} needed by the aggregates")


def compute_aggregates(
    events: pd.DataFrame,
    keys: Sequence[str],
    plans: Sequence[AggregatePlan],
    created_at: pd.Timestamp,
    ratios: Sequence[tuple[str, str, str]] = (),
    until: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Feature table: keys, event_timestamp, created_timestamp and one column per plan/ratio.

    ``until`` is the end of the data: no row is stamped after it (default: no cut).
    """
    _check_columns(events, keys, plans)
    end = f"TIMESTAMP '{pd.Timestamp(until).isoformat()}'" if until is not None else None
    table = _run_in_chunks(events, keys, plans, end)
    table = table.rename(columns={"t": EVENT_TIMESTAMP})
    table.insert(len(keys) + 1, CREATED_TIMESTAMP, pd.Timestamp(created_at).as_unit("ns"))
    for name, numerator, denominator in ratios:
        denominators = table[denominator].astype("float64")
        table[name] = table[numerator].astype("float64") / denominators.where(denominators != 0)
    table[EVENT_TIMESTAMP] = table[EVENT_TIMESTAMP].astype("datetime64[ns]")
    return table  # ordered by keys and time in SQL


def aggregate_shard(
    source: str,
    target: str,
    *,
    keys: tuple[str, ...],
    plans: tuple[AggregatePlan, ...],
    created_at: pd.Timestamp,
    ratios: tuple[tuple[str, str, str], ...],
    until: pd.Timestamp | None,
    prepare: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
) -> int:
    """One shard of whole entities: its events from ``source``, its feature rows to ``target``.

    Module-level (with keyword arguments bound by ``functools.partial``) so that Ray ships it by
    reference to a worker that has the project installed. ``until`` is the end of the whole
    log, not of the shard: a shard whose entities went quiet early still gets its expiries.
    ``prepare`` is a row-wise step applied to the shard's events first (the arrival times of
    delayed labels), so the whole log never has to pass through it in one frame.
    """
    events = pd.read_parquet(source)
    if prepare is not None:
        events = prepare(events)
    table = compute_aggregates(events, keys, plans, created_at, ratios, until)
    table.to_parquet(target, index=False)
    return len(table)


def _shard_function(
    keys: Sequence[str],
    plans: Sequence[AggregatePlan],
    created_at: pd.Timestamp,
    ratios: Sequence[tuple[str, str, str]],
    until: pd.Timestamp | None,
    prepare: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
) -> ShardFunction:
    """:func:`aggregate_shard` with its settings bound: what either sharded path ships."""
    return partial(
        aggregate_shard,
        keys=tuple(keys),
        plans=tuple(plans),
        created_at=pd.Timestamp(created_at),
        ratios=tuple(ratios),
        until=until,
        prepare=prepare,
    )


def compute_aggregates_sharded(
    events: pd.DataFrame,
    keys: Sequence[str],
    plans: Sequence[AggregatePlan],
    created_at: pd.Timestamp,
    engine: ShardEngine,
    label: str,
    ratios: Sequence[tuple[str, str, str]] = (),
    until: pd.Timestamp | None = None,
) -> tuple[pd.DataFrame, list[ShardResult]]:
    """:func:`compute_aggregates` over shards of whole entities run by ``engine``.

    Every aggregate is per entity, so the shards' rows are the unsharded table's rows; they are
    put back in (keys, time) order, the order of the one-query result. With one shard on the
    local engine this is :func:`compute_aggregates` itself: no files, no extra pass. ``label``
    names the shard folder under the execution's storage (removed when done).
    """
    _check_columns(events, keys, plans)
    shards = shard_count(engine.execution, len(events), engine.cpus)
    if events.empty or (shards == 1 and engine.execution.engine == "local"):
        return compute_aggregates(events, keys, plans, created_at, ratios, until), []
    function = _shard_function(keys, plans, created_at, ratios, until)
    with shard_workspace(engine.execution, label) as folder:
        results = engine.run(function, split_frame(events, keys, shards, folder))
        table = read_outputs(results)
    order = [*keys, EVENT_TIMESTAMP]
    return table.sort_values(order, kind="stable", ignore_index=True), results


@contextmanager
def aggregate_files_sharded(
    sources: Sequence[Path],
    keys: Sequence[str],
    plans: Sequence[AggregatePlan],
    created_at: pd.Timestamp,
    engine: ShardEngine,
    label: str,
    *,
    rows: int,
    until: pd.Timestamp | None,
    ratios: Sequence[tuple[str, str, str]] = (),
    prepare: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
) -> Iterator[list[ShardResult]]:
    """:func:`compute_aggregates` over the event files ``sources``, out of core: the files are
    streamed into shards of whole entities (``rows`` events in all sets their count), each
    shard is aggregated by ``engine``, and the shards' results are yielded in shard order, each
    output in (keys, time) order, while their files exist (the folder is removed on exit).

    Nothing holds more than one batch or one shard: ``until`` (the end of the whole log) is
    given, not derived, and ``prepare`` (row-wise) runs inside each shard. With no events at
    all, one shard of no rows still yields the table's columns.
    """
    function = _shard_function(keys, plans, created_at, ratios, until, prepare)
    shards = shard_count(engine.execution, rows, engine.cpus)
    with shard_workspace(engine.execution, label) as folder:
        inputs = split_parquet(sources, keys, shards, folder)
        results = engine.run(function, inputs)
        yield sorted(results, key=lambda r: r.shard)
