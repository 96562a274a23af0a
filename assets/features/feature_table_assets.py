"""Asset factory for ``<use case>/features/<table>``: one asset per feature table.

Aggregate tables read the whole event log (windows reach across days); attribute tables read
their entity's raw table. Each reports rows, time range, null rates, entity count and a preview.

Aggregate tables are out of core: peak memory follows the shard size, not the log. The log is
a dependency, not an input (the IO manager would load it whole): its files are streamed into
shards of whole entities, each shard is aggregated by the use case's execution engine
(``execution`` section or ``RAY_ADDRESS``: one at a time in this process, or as Ray tasks), and
the shards' rows are written one shard at a time to the file the IO manager would write
(:mod:`assets.features.table_files`), its ``path`` in the metadata as the IO manager records
it. Metadata and the quality suite are summed over the shards as they pass
(:class:`assets.metadata.TableSummary`, :class:`assets.quality.sharded.ShardedQuality`). The
engine is opened, and a Ray cluster checked, before anything is computed or written.
"""

from collections.abc import Iterator

import dagster as dg
import pandas as pd

from assets.features.aggregates import (
    EVENT_TIMESTAMP,
    compute_aggregates_sharded,
)
from assets.features.availability import with_arrival_times
from assets.features.table_files import shard_tables, shards_schema, staged_parquet
from assets.features.views import (
    FeatureTableDef,
    aggregate_plans,
    aggregate_table_files,
    compute_attribute_table,
    feature_tables,
)
from assets.features.window_sql import window_text
from assets.metadata import (
    TableSummary,
    asset_identity,
    rounded_metadata,
    shard_metadata,
    table_metadata,
)
from assets.quality.quality_checks import (
    quality_check_result,
    quality_check_spec,
    report_check_result,
    sharded_quality,
)
from assets.quality.suites import TableRole
from assets.raw.event_log import log_files, log_size_and_end
from configs.schema.usecase import UseCaseSpec
from resources.home import HomeResource
from runtime import layout
from runtime.shards import ShardResult, open_engine, resolve_execution

# What a shard task imports on a worker: checked on every node before a Ray run starts.
SHARD_MODULES = ("assets.features.aggregates", "assets.features.availability")


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
    """The windowed-aggregate table of one view from a log in memory, in shards on the use
    case's engine: the reference the asset's out-of-core path (:func:`materialize_aggregate_table`)
    is compared with, and what the shard tests run.

    The same inputs as :func:`assets.features.views.compute_aggregate_table`: plans on the
    outcome axes, the end of the data taken before arrival times are added.
    """
    plans, ratios = aggregate_plans(spec, table)
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


def materialize_aggregate_table(
    context: dg.AssetExecutionContext,
    spec: UseCaseSpec,
    table: FeatureTableDef,
    home: HomeResource,
    created_at: pd.Timestamp,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """An aggregate table from the ``raw_events`` files to its own file, one shard at a time.

    The same rows as :func:`compute_aggregate_table` on the whole log: the end of the data is
    the log's latest event time, and arrival times are added inside each shard (row-wise).
    """
    key = dg.AssetKey(layout.feature_table_key(spec.name, table.name))
    plans, _ = aggregate_plans(spec, table)  # for the metadata; fails first without a time
    files = log_files(spec, home.layout)
    rows, until = log_size_and_end(files, str(spec.events.timestamp))
    execution = resolve_execution(spec.execution, str(home.layout.root))
    target = home.layout.table_file(tuple(key.path))
    summary = TableSummary(EVENT_TIMESTAMP, table.keys)
    quality = sharded_quality(context, spec, key, home, table.feature_names)
    with (
        open_engine(execution, SHARD_MODULES) as engine,
        aggregate_table_files(
            spec,
            table,
            files,
            created_at,
            engine,
            f"{spec.name}/features/{table.name}",
            rows=rows,
            until=until,
        ) as results,
    ):
        outputs = [r.output for r in results]
        schema = shards_schema(outputs)
        with staged_parquet(target, schema) as writer:
            for shard in shard_tables(outputs, schema):
                writer.write_table(shard)
                # one shard in memory at a time: Arrow's buffers freed as pandas takes them
                frame = shard.to_pandas(split_blocks=True, self_destruct=True)
                del shard
                summary.add(frame)
                quality.add(frame)
                del frame
            check = report_check_result(key, quality.report())
    metadata = {**summary.metadata(), "path": dg.MetadataValue.path(str(target))}
    metadata["ttl"] = str(table.ttl) if table.ttl else "never stale"
    metadata["windows"] = window_text((p.window, p.hop_ns) for p in plans)
    metadata["rows_per_event"] = summary.rows / rows if rows else 0.0
    # one shard in this process is the unsharded computation: say so as before
    unsharded = len(results) == 1 and results[0].node == "local"
    metadata.update(shard_metadata([] if unsharded else results))
    if "data_docs" in check.metadata:
        metadata["data_docs"] = check.metadata["data_docs"]
    yield dg.MaterializeResult(metadata=rounded_metadata(metadata))
    yield check


def feature_table_asset(spec: UseCaseSpec, table: FeatureTableDef) -> dg.AssetsDefinition:
    """One feature table, computed from the events (read by file, never loaded whole) or from
    an entity table (small: loaded by the IO manager)."""
    view = spec.features[table.view]
    key = dg.AssetKey(layout.feature_table_key(spec.name, table.name))
    aggregates = table.kind == "aggregates"
    source = (
        {"deps": [_source_key(spec, table)]}
        if aggregates
        else {"ins": {"source": dg.AssetIn(key=_source_key(spec, table))}}
    )

    @dg.asset(
        key=key,
        **source,
        **asset_identity(spec, "features"),
        kinds={"duckdb", "parquet"} if aggregates else {"pandas", "parquet"},
        description=(
            f"{table.kind.capitalize()} of {', '.join(table.entities)} for feature view {table.view!r}"
            f" (ttl {view.ttl}): {', '.join(table.feature_names)}."
        ),
        check_specs=[quality_check_spec(key, TableRole.FEATURES)],
    )
    def feature_table(context: dg.AssetExecutionContext, home: HomeResource, **inputs):
        created_at = pd.Timestamp.now(tz="UTC").tz_localize(None).floor("us")
        if aggregates:
            yield from materialize_aggregate_table(context, spec, table, home, created_at)
            return
        frame = compute_attribute_table(spec, table, inputs["source"], created_at)
        check = quality_check_result(
            context, spec, key, frame, TableRole.FEATURES, home, table.feature_names
        )
        metadata = _metadata(frame, table)
        if "data_docs" in check.metadata:
            metadata["data_docs"] = check.metadata["data_docs"]
        yield dg.Output(frame, metadata=rounded_metadata(metadata))
        yield check

    return feature_table


def feature_assets(spec: UseCaseSpec) -> list[dg.AssetsDefinition]:
    return [feature_table_asset(spec, table) for table in feature_tables(spec)]
