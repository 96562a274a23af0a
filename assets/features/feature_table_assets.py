"""Asset factory for ``<use case>/features/<table>``: one asset per feature table.

Aggregate tables read the whole events table (windows reach across days); attribute tables read
their entity's raw table. Each reports rows, time range, null rates, entity count and a preview.

Aggregates run through the use case's execution engine (``execution`` section or
``RAY_ADDRESS``): shards of whole entities, one at a time in this process or as Ray tasks. The
engine is opened, and a Ray cluster checked, before anything is computed or written.
"""

import dagster as dg
import pandas as pd

from assets.features.aggregates import (
    EVENT_TIMESTAMP,
    compute_aggregates_sharded,
    plan_aggregates,
)
from assets.features.availability import outcome_axes, with_arrival_times
from assets.features.views import (
    FeatureTableDef,
    compute_attribute_table,
    feature_tables,
)
from assets.metadata import asset_identity, rounded_metadata, shard_metadata, table_metadata
from assets.quality.quality_checks import quality_check_result, quality_check_spec
from assets.quality.suites import TableRole
from configs.schema.usecase import UseCaseSpec
from resources.home import HomeResource
from runtime import layout
from runtime.shards import ShardResult, open_engine, resolve_execution

# What a shard task imports on a worker: checked on every node before a Ray run starts.
SHARD_MODULES = ("assets.features.aggregates",)


def _source_key(spec: UseCaseSpec, table: FeatureTableDef) -> dg.AssetKey:
    if table.kind == "aggregates":
        return dg.AssetKey(layout.raw_events_key(spec.name))
    return dg.AssetKey(layout.raw_table_key(spec.name, spec.entities[table.entities[0]].table))


def _metadata(frame: pd.DataFrame, table: FeatureTableDef) -> dict:
    metadata = table_metadata(frame, EVENT_TIMESTAMP)
    metadata["entities"] = int(frame[list(table.keys)].drop_duplicates().shape[0])
    metadata["ttl"] = str(table.ttl) if table.ttl else "never stale"
    return metadata


def compute_aggregate_table(
    spec: UseCaseSpec,
    table: FeatureTableDef,
    events: pd.DataFrame,
    created_at: pd.Timestamp,
    home: str,
) -> tuple[pd.DataFrame, list[ShardResult]]:
    """The windowed-aggregate table of one view, in shards on the use case's engine.

    The same inputs as :func:`assets.features.views.compute_aggregate_table`: plans on the
    outcome axes, the end of the data taken before arrival times are added.
    """
    if spec.events.timestamp is None:
        raise ValueError(f"{spec.name}: features.{table.view}: aggregates need events.timestamp")
    view = spec.features[table.view]
    plans = plan_aggregates(view, outcome_axes(spec), spec.events.timestamp)
    ratios = [(r.name, r.numerator, r.denominator) for r in view.ratios]
    until = events[spec.events.timestamp].max()  # the end of the data
    execution = resolve_execution(spec.execution, home)
    with open_engine(execution, SHARD_MODULES) as engine:
        return compute_aggregates_sharded(
            with_arrival_times(spec, events),
            table.keys,
            plans,
            created_at,
            engine,
            f"{spec.name}/features/{table.name}",
            ratios,
            until,
        )


def feature_table_asset(spec: UseCaseSpec, table: FeatureTableDef) -> dg.AssetsDefinition:
    """One feature table, computed from the events or an entity table."""
    view = spec.features[table.view]
    key = dg.AssetKey(layout.feature_table_key(spec.name, table.name))

    @dg.asset(
        key=key,
        ins={"source": dg.AssetIn(key=_source_key(spec, table))},
        **asset_identity(spec, "features"),
        kinds={"duckdb", "parquet"} if table.kind == "aggregates" else {"pandas", "parquet"},
        description=(
            f"{table.kind.capitalize()} of {', '.join(table.entities)} for feature view {table.view!r}"
            f" (ttl {view.ttl}): {', '.join(table.feature_names)}."
        ),
        check_specs=[quality_check_spec(key, TableRole.FEATURES)],
    )
    def feature_table(context: dg.AssetExecutionContext, source: pd.DataFrame, home: HomeResource):
        created_at = pd.Timestamp.now(tz="UTC").tz_localize(None).floor("us")
        results: list[ShardResult] = []
        if table.kind == "aggregates":
            home_root = str(home.layout.root)
            frame, results = compute_aggregate_table(spec, table, source, created_at, home_root)
        else:
            frame = compute_attribute_table(spec, table, source, created_at)
        check = quality_check_result(
            context, spec, key, frame, TableRole.FEATURES, home, table.feature_names
        )
        metadata = _metadata(frame, table)
        if table.kind == "aggregates":
            metadata.update(shard_metadata(results))
        if "data_docs" in check.metadata:
            metadata["data_docs"] = check.metadata["data_docs"]
        yield dg.Output(frame, metadata=rounded_metadata(metadata))
        yield check

    return feature_table


def feature_assets(spec: UseCaseSpec) -> list[dg.AssetsDefinition]:
    return [feature_table_asset(spec, table) for table in feature_tables(spec)]
