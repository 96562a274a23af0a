"""Asset factory for ``<use case>/training_sets/<model>``: one point-in-time training set per model.

The asset reads the event log by file, only the columns its label rows use
(:func:`assets.training.label_rows.label_event_columns`; fraud's object columns mcc and channel,
say, are never loaded): whole on the one-pass path, streamed into shards a batch at a time when
sharded. It reads the split plan through the IO manager, and the feature tables straight
from their Parquet files (see ``assets.upstream``). Its metadata shows rows per split, label
rates, null rates of every feature, what was left out and why, and a preview.

The label rows and the point-in-time join run on the use case's execution engine (``execution``
section or ``RAY_ADDRESS``), as the feature aggregates do: in shards of whole entities when it
asks for more than one or is Ray, else in one pass. The engine is opened, and a Ray cluster
checked, before anything is computed; the metadata says where the shards ran.
"""

import dagster as dg
import pandas as pd
from upath import UPath

from assets.metadata import TableSummary, asset_identity, rounded_metadata, shard_metadata
from assets.quality.quality_checks import (
    quality_check_spec,
    report_check_result,
    sharded_quality,
)
from assets.quality.sharded import ShardedQuality
from assets.quality.suites import TableRole
from assets.raw.event_log import log_columns, log_files, log_size_and_end
from assets.split.plan import SPLITS
from assets.training.build import SPLIT, TrainingSetFile, training_rows, write_training_set
from assets.training.label_rows import LabelRowError
from assets.training.model_views import label_columns, model_tables
from assets.training.sharded_join import SHARD_MODULES
from assets.training.sharded_labels import EventFiles
from assets.upstream import materialized_path
from configs.schema.usecase import UseCaseSpec
from resources.home import HomeResource
from runtime import layout
from runtime.shards import open_engine, resolve_execution


def _catalog_key(spec: UseCaseSpec, model: str) -> dg.AssetKey | None:
    negatives = spec.model[model].negatives
    table = spec.entities[negatives.entity].table if negatives else None
    return dg.AssetKey(layout.raw_table_key(spec.name, table)) if table else None


class SplitCounts:
    """Rows and label rates per split, summed over the parts of a set that passes by in parts."""

    def __init__(self, labels: dict[str, str]) -> None:
        self.labels = labels
        self.rows = pd.Series(dtype="int64")
        self.sums = pd.DataFrame(dtype="float64")
        self.counts = pd.DataFrame(dtype="int64")

    def add(self, part: pd.DataFrame) -> None:
        grouped = part.groupby(SPLIT, observed=True)
        values = grouped[list(self.labels.values())]
        self.rows = self.rows.add(grouped.size(), fill_value=0)
        self.sums = self.sums.add(values.sum().astype(float), fill_value=0)
        self.counts = self.counts.add(values.count(), fill_value=0)

    def table(self) -> pd.DataFrame:
        """One row per split present, in split order: rows and each label's rate."""
        table = self.rows.astype(int).rename("rows").to_frame()
        for name, column in self.labels.items():
            table[f"{name}_rate"] = (self.sums[column] / self.counts[column]).round(4)
        table.index.name = SPLIT
        return table.reindex([s for s in SPLITS if s in table.index]).reset_index()

    def label_rates(self) -> dict[str, float]:
        """Each label's rate over the whole set (``label_rate/<name>``, as for any table)."""
        return {
            f"label_rate/{name}": float(self.sums[column].sum() / self.counts[column].sum())
            for name, column in self.labels.items()
            if self.counts.get(column) is not None and self.counts[column].sum()
        }


def _log(spec: UseCaseSpec, files: list[UPath]) -> EventFiles:
    """The event files with their size and end (footers and the time column only)."""
    rows, end = log_size_and_end(files, spec.events.timestamp)
    return EventFiles(tuple(files), tuple(log_columns(files)), rows, end)


def _metadata(written: TrainingSetFile, summary: TableSummary, splits: SplitCounts) -> dict:
    metadata = {**summary.metadata(), **splits.label_rates()}
    metadata["path"] = dg.MetadataValue.path(str(written.path))
    table = splits.table()
    metadata["splits"] = dg.MetadataValue.md(table.to_markdown(index=False))
    for row in table.itertuples():
        metadata[f"rows/{row.split}"] = int(row.rows)
    metadata["features"] = len(written.feature_columns)
    metadata["feature_columns"] = dg.MetadataValue.md(
        "\n".join(f"- `{c}`" for c in written.feature_columns) or "_(none)_"
    )
    metadata["dropped/label_not_final"] = written.dropped_immature
    metadata["dropped/in_split_gap"] = written.dropped_gap
    metadata["sampled_negatives"] = written.negatives
    metadata.update(shard_metadata(written.shard_results, written.shards))
    return metadata


def training_set_asset(spec: UseCaseSpec, model: str) -> dg.AssetsDefinition:
    """The training set of one model of a use case."""
    tables = {
        table.name: dg.AssetKey(layout.feature_table_key(spec.name, table.name))
        for table in model_tables(spec, model)
    }
    ins = {"split_plan": dg.AssetIn(key=dg.AssetKey(layout.split_plan_key(spec.name)))}
    catalog_key = _catalog_key(spec, model)
    if catalog_key is not None:
        ins["catalog"] = dg.AssetIn(key=catalog_key)
    stage = spec.model[model]
    key = dg.AssetKey(layout.training_set_key(spec.name, model))

    @dg.asset(
        key=key,
        ins=ins,
        # the event log read by file: only the columns the label rows use
        deps=[dg.AssetKey(layout.raw_events_key(spec.name)), *tables.values()],
        **asset_identity(spec, "training"),
        kinds={"duckdb", "parquet"},
        description=(
            f"Point-in-time-correct training set of model {model!r} ({stage.problem}, labels "
            f"{', '.join(stage.labels)}): features as of just before each event, "
            f"{spec.split.method} split with gap {spec.split.gap}"
            + (
                f", {stage.negatives.ratio} {stage.negatives.strategy} negatives per positive"
                if stage.negatives
                else ""
            )
            + "."
        ),
        check_specs=[quality_check_spec(key, TableRole.TRAINING_SET)],
    )
    def training_set(context: dg.AssetExecutionContext, home: HomeResource, **inputs: pd.DataFrame):
        paths = {name: materialized_path(context, key) for name, key in tables.items()}
        execution = resolve_execution(spec.execution, str(home.layout.root))
        files = log_files(spec, home.layout)
        labels = label_columns(spec, model)
        summary = TableSummary(spec.events.timestamp, ())
        splits = SplitCounts(labels)
        quality: ShardedQuality | None = None

        def sink(part: pd.DataFrame, features: list[str]) -> None:  # each part once, as written
            nonlocal quality
            if quality is None:
                quality = sharded_quality(
                    context, spec, key, home, features, TableRole.TRAINING_SET, [*labels.values()]
                )
            summary.add(part)
            splits.add(part)
            quality.add(part)

        try:
            with (
                open_engine(execution, SHARD_MODULES) as engine,
                # read once the engine (a Ray cluster) is checked: a bad address fails first
                training_rows(
                    spec, model, _log(spec, files), inputs.get("catalog"), engine
                ) as rows,
            ):
                written = write_training_set(
                    spec,
                    model,
                    rows,
                    inputs["split_plan"],
                    paths,
                    home.layout.table_file(tuple(key.path)),
                    sink,
                )
        except LabelRowError as error:
            raise dg.Failure(str(error)) from None
        if quality is None:
            raise dg.Failure(f"{key.to_user_string()}: no part of the set was written")
        check = report_check_result(key, quality.report())
        metadata = _metadata(written, summary, splits)
        if "data_docs" in check.metadata:
            metadata["data_docs"] = check.metadata["data_docs"]
        yield dg.MaterializeResult(metadata=rounded_metadata(metadata))
        yield check

    return training_set


def training_set_assets(spec: UseCaseSpec) -> list[dg.AssetsDefinition]:
    return [training_set_asset(spec, model) for model in spec.model]
