"""Asset factory for the raw stage: ``<use case>/raw_events`` plus one ``raw_<table>`` per entity.

Events are daily-partitioned by event time when the source fixes a start day; a single-run
backfill policy lets one run produce many days. Each raw asset validates its output against the
pandera schema derived from the spec and reports the result as a blocking ``schema`` check, so
corrupted data stops the downstream stages and shows counts and offending rows in the UI.
"""

from datetime import timedelta

import dagster as dg
import pandas as pd

from assets.metadata import rounded_metadata, table_metadata
from assets.raw.tables import all_events, entity_table, events_by_day, partition_range
from assets.raw.validation import ValidationReport, table_schema, validate_table
from configs.schema.tables import Columns
from configs.schema.usecase import UseCaseSpec

SCHEMA_CHECK = "schema"


def daily_partitions(spec: UseCaseSpec) -> dg.DailyPartitionsDefinition | None:
    """Daily partitions of the events, ``None`` when the events have no time or no start day."""
    bounds = partition_range(spec)
    if bounds is None:
        return None
    start, last = bounds
    end = (last + timedelta(days=1)).isoformat() if last else None
    return dg.DailyPartitionsDefinition(start_date=start.isoformat(), end_date=end)


def declared_at(spec: UseCaseSpec, table: str) -> dict[str, str]:
    """Column -> ``FILE:LINE`` of its declaration in the YAML (where a failed check is fixed)."""
    if table == "events":
        locs = {column: ("events", "columns", column) for column in spec.events.columns}
    else:
        name, entity = next((n, e) for n, e in spec.entities.items() if e.table == table)
        locs = {column: ("entities", name, "columns", column) for column in entity.columns}
        locs[entity.key] = ("entities", name, "key")
    out = {}
    for column, loc in locs.items():
        issue = spec.issue(loc, "")
        out[column] = f"{issue.file}:{issue.line}" if issue.line else issue.file
    return out


def check_result(
    report: ValidationReport, declared: dict[str, str] | None = None
) -> dg.AssetCheckResult:
    """Turn a validation report into the Dagster check result shown in the UI.

    ``declared`` (column -> ``FILE:LINE``) adds where each failing column's rules are written.
    """
    metadata: dict[str, dg.MetadataValue | int] = {
        "rows": report.rows,
        "failed_rows": report.failed_rows,
    }
    description = None
    if not report.passed:
        failures = report.failures
        if declared:
            failures = failures.assign(declared=failures["column"].map(declared).fillna(""))
            lines = [f"{c} ({declared[c]})" for c in failures["column"].unique() if c in declared]
        else:
            lines = []
        metadata["failures"] = dg.MetadataValue.md(failures.to_markdown(index=False))
        metadata["sample"] = dg.MetadataValue.md(report.sample.head(10).to_markdown(index=False))
        description = f"{report.failed_rows} value(s) break the spec"
        if lines:
            description += f": {', '.join(lines)}"
    return dg.AssetCheckResult(
        check_name=SCHEMA_CHECK,
        passed=report.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=rounded_metadata(metadata),
        description=description,
    )


def _common(spec: UseCaseSpec, name: str, description: str | None) -> dict:
    key = dg.AssetKey([spec.name, name])
    return {
        "key": key,
        "group_name": spec.name,
        "owners": spec.owners,
        "tags": {**spec.tags, "stage": "raw"},
        "description": description or spec.description,
        "kinds": {"pandas", "parquet"},
        "check_specs": [
            dg.AssetCheckSpec(
                SCHEMA_CHECK,
                asset=key,
                blocking=True,
                description="Types, nullability, ranges and allowed values declared in the YAML.",
            )
        ],
    }


def _validated(
    name: str, frame: pd.DataFrame, columns: Columns
) -> tuple[pd.DataFrame, ValidationReport]:
    return validate_table(frame, table_schema(name, columns))


def _split_days(frame: pd.DataFrame, lengths: dict[str, int]) -> dict[str, pd.DataFrame]:
    """Cut a concatenation back into its days (``lengths`` in concatenation order)."""
    out, start = {}, 0
    for day, length in lengths.items():
        out[day] = frame.iloc[start : start + length].reset_index(drop=True)
        start += length
    return out


def raw_events_asset(spec: UseCaseSpec) -> dg.AssetsDefinition:
    """``<use case>/raw_events``: daily partitions when possible, one table otherwise."""
    partitions = daily_partitions(spec)
    labels = {name: label.column for name, label in spec.labels.items()}
    timestamp = spec.events.timestamp

    @dg.asset(
        **_common(spec, "raw_events", spec.events.description),
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run() if partitions else None,
    )
    def raw_events(context: dg.AssetExecutionContext):
        if partitions is None:
            frame, report = _validated("events", all_events(spec), spec.events.columns)
            yield dg.Output(
                frame, metadata=rounded_metadata(table_metadata(frame, timestamp, labels))
            )
        else:
            days = events_by_day(spec, context.partition_keys)
            combined = pd.concat(days.values(), ignore_index=True)
            frame, report = _validated("events", combined, spec.events.columns)
            by_day = _split_days(frame, {day: len(part) for day, part in days.items()})
            yield dg.Output(
                by_day, metadata=rounded_metadata(table_metadata(frame, timestamp, labels))
            )
        yield check_result(report, declared_at(spec, "events"))

    return raw_events


def entity_table_asset(spec: UseCaseSpec, table: str) -> dg.AssetsDefinition:
    """``<use case>/raw_<table>``: the attribute table of one entity."""
    entity = spec.entity_tables()[table]

    @dg.asset(
        **_common(spec, f"raw_{table}", entity.description or f"Attributes of each {entity.key}.")
    )
    def raw_entity_table():
        frame, report = _validated(table, entity_table(spec, table), entity.table_columns())
        yield dg.Output(frame, metadata=rounded_metadata(table_metadata(frame, entity.timestamp)))
        yield check_result(report, declared_at(spec, table))

    return raw_entity_table


def raw_assets(spec: UseCaseSpec) -> list[dg.AssetsDefinition]:
    """Every raw asset of a use case: entity tables first, then the events."""
    return [
        *(entity_table_asset(spec, table) for table in spec.entity_tables()),
        raw_events_asset(spec),
    ]
