"""From the YAML ``features`` section to feature tables: names, keys, dtypes, TTLs, contents.

Each feature view of the spec yields up to two Feast feature views: ``<view>`` with its windowed
aggregates (rows at every change point, see ``aggregates``) and ``<view>_attributes`` with the
static entity-table columns (one row per entity, stamped when the entity appeared). Passthrough
columns are request-time features: they travel with each label row, not through the store.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path

import pandas as pd

from assets.features.aggregates import (
    CREATED_TIMESTAMP,
    EVENT_TIMESTAMP,
    AggregatePlan,
    aggregate_files_sharded,
    compute_aggregates,
    plan_aggregates,
)
from assets.features.availability import outcome_axes, with_arrival_times
from configs.schema.base import parse_duration
from configs.schema.stages import FeatureViewSpec
from configs.schema.usecase import UseCaseSpec
from runtime import layout
from runtime.shards import ShardEngine, ShardResult

# Attributes do not go stale: a zero TTL means "never stale" to Feast and to our join alike.
ATTRIBUTE_TTL = timedelta(0)
EPOCH = pd.Timestamp("1970-01-01")
_ATTRIBUTE_DTYPES = {
    "int": "int",
    "float": "float",
    "string": "string",
    "bool": "int",
    "timestamp": "timestamp",
}


@dataclass(frozen=True)
class FeatureTableDef:
    """One feature table (one Feast feature view) derived from a spec feature view."""

    name: str
    view: str
    kind: str  # "aggregates" or "attributes"
    entities: tuple[str, ...]
    keys: tuple[str, ...]
    features: tuple[tuple[str, str], ...]  # (column, dtype)
    ttl: timedelta

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.features)


def _aggregate_dtype(spec: UseCaseSpec, agg: str, column: str | None) -> str:
    if agg in ("count", "distinct_count"):
        return "int"
    if agg == "time_since_last":
        return "timestamp"
    if agg == "last_n":
        source = spec.events.columns[column or ""].dtype
        return "int_list" if source in ("int", "bool") else "string_list"
    return "float"


def _aggregate_table(spec: UseCaseSpec, name: str, view: FeatureViewSpec) -> FeatureTableDef:
    features = [
        (feature, _aggregate_dtype(spec, aggregate.agg, aggregate.column))
        for aggregate in view.aggregates
        for feature in aggregate.feature_names()
    ] + [(ratio.name, "float") for ratio in view.ratios]
    keys = tuple(spec.entities[e].key for e in view.entities)
    return FeatureTableDef(
        name,
        name,
        "aggregates",
        tuple(view.entities),
        keys,
        tuple(features),
        parse_duration(view.ttl),
    )


def _attribute_tables(spec: UseCaseSpec, name: str, view: FeatureViewSpec) -> list[FeatureTableDef]:
    owners: dict[str, list[str]] = {}
    for column in view.attributes:
        owner = next(e for e in view.entities if column in spec.entities[e].columns)
        owners.setdefault(owner, []).append(column)
    tables = []
    for entity, columns in owners.items():
        table_name = layout.attributes_view(name if len(owners) == 1 else f"{name}_{entity}")
        entity_spec = spec.entities[entity]
        features = tuple((c, _ATTRIBUTE_DTYPES[entity_spec.columns[c].dtype]) for c in columns)
        tables.append(
            FeatureTableDef(
                table_name,
                name,
                "attributes",
                (entity,),
                (entity_spec.key,),
                features,
                ATTRIBUTE_TTL,
            )
        )
    return tables


def feature_tables(spec: UseCaseSpec) -> list[FeatureTableDef]:
    """Every feature table of a use case, in YAML order."""
    tables: list[FeatureTableDef] = []
    for name, view in spec.features.items():
        if view.aggregates:
            tables.append(_aggregate_table(spec, name, view))
        tables.extend(_attribute_tables(spec, name, view))
    return tables


def compute_aggregate_table(
    spec: UseCaseSpec,
    table: FeatureTableDef,
    events: pd.DataFrame,
    created_at: pd.Timestamp,
    *,
    every_change_point: bool = False,
) -> pd.DataFrame:
    """The windowed-aggregate table of one view over the whole events table (with
    ``every_change_point``, the rows that repeat the row before are kept too)."""
    view = spec.features[table.view]
    if spec.events.timestamp is None:
        raise ValueError(f"{spec.name}: features.{table.view}: aggregates need events.timestamp")
    # outcomes (labels and what reveals them) move when they become known, not at the event
    plans = plan_aggregates(
        view, outcome_axes(spec), spec.events.timestamp, every_change_point=every_change_point
    )
    ratios = [(r.name, r.numerator, r.denominator) for r in view.ratios]
    until = events[spec.events.timestamp].max()  # the end of the data
    events = with_arrival_times(spec, events)
    return compute_aggregates(events, table.keys, plans, created_at, ratios, until)


def aggregate_plans(
    spec: UseCaseSpec, table: FeatureTableDef
) -> tuple[list[AggregatePlan], list[tuple[str, str, str]]]:
    """The aggregate plans (on the outcome axes) and ratios of an aggregate table's view."""
    if spec.events.timestamp is None:
        raise ValueError(f"{spec.name}: features.{table.view}: aggregates need events.timestamp")
    view = spec.features[table.view]
    plans = plan_aggregates(view, outcome_axes(spec), spec.events.timestamp)
    return plans, [(r.name, r.numerator, r.denominator) for r in view.ratios]


@contextmanager
def aggregate_table_files(
    spec: UseCaseSpec,
    table: FeatureTableDef,
    files: Sequence[Path],
    created_at: pd.Timestamp,
    engine: ShardEngine,
    label: str,
    *,
    rows: int,
    until: pd.Timestamp | None,
) -> Iterator[list[ShardResult]]:
    """The windowed-aggregate table of one view from the event files, out of core, in shards
    run by ``engine``: the shards' results while their files exist (see
    :func:`assets.features.aggregates.aggregate_files_sharded`). ``rows`` and ``until`` are
    the log's size and last event time; arrival times are added inside each shard."""
    plans, ratios = aggregate_plans(spec, table)
    with aggregate_files_sharded(
        files,
        table.keys,
        plans,
        created_at,
        engine,
        label,
        rows=rows,
        until=until,
        ratios=ratios,
        prepare=partial(with_arrival_times, spec),
    ) as results:
        yield results


def compute_attribute_table(
    spec: UseCaseSpec, table: FeatureTableDef, entity_frame: pd.DataFrame, created_at: pd.Timestamp
) -> pd.DataFrame:
    """Static attributes, one row per entity, stamped when the entity appeared (or the epoch)."""
    entity = spec.entities[table.entities[0]]
    frame = entity_frame[[entity.key, *table.feature_names]].copy()
    appeared = (
        entity_frame[entity.timestamp] if entity.timestamp else pd.Series(EPOCH, index=frame.index)
    )
    frame.insert(1, EVENT_TIMESTAMP, appeared.fillna(EPOCH).astype("datetime64[ns]"))
    frame.insert(2, CREATED_TIMESTAMP, pd.Timestamp(created_at).as_unit("ns"))
    for column, dtype in table.features:
        if dtype == "int" and frame[column].dtype == bool:
            frame[column] = frame[column].astype("int64")
    return frame.sort_values([entity.key, EVENT_TIMESTAMP], ignore_index=True)
