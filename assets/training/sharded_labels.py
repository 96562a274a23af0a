"""A model's label rows and sampled negatives, shard by shard from the event files: out of core.

The one-pass build reads the log's label columns whole and computes the label rows from the
frame (:func:`assets.training.label_rows.label_rows`). A sharded build never holds them:

1. the event files are streamed into shards of whole evaluation units (cards, users), one batch
   in memory at a time, each row carrying its place in the log (``EVENT_ROW``); what needs the
   whole log is counted as the batches pass (:class:`LogScan`): null keys, times and labels
   (the one-pass messages, the same first rows), the rows too young for final labels, and for
   sampled negatives the impressions per item and day and, without a catalog, the items seen;
2. each shard computes its label rows (:func:`~assets.training.label_rows.label_rows_shard`),
   given the end of the whole log, here or as Ray tasks;
3. for a model that samples negatives, the positives are cut again by the first column of
   their identity, so identical positives meet, and each shard draws theirs
   (:func:`~assets.training.negatives.negatives_shard`);
4. DuckDB sorts the shards' outputs into label order (the log's order; with negatives, as-of
   order with the positives before their draws, as the one-pass build's stable sort puts them)
   into one Parquet file, out of core, and the build reads it a chunk at a time
   (:class:`~assets.training.label_file.LabelFile`).

The file is the one-pass label frame, row for row (``tests/unit/test_sharded_labels.py``,
``tests/integration/test_sharded_training_set.py``). Nothing here imports Dagster or Ray.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from upath import UPath

from assets.training.duckdb_files import literal, quote, sorting_connection
from assets.training.label_file import LabelFile
from assets.training.label_rows import (
    AS_OF,
    EVENT_ROW,
    NULL_SAMPLE,
    label_event_columns,
    label_rows_shard,
    maturity,
    null_label_error,
    null_value_error,
    required_fields,
    row_columns,
    shard_key,
)
from assets.training.model_views import key_columns, label_columns
from assets.training.negatives import (
    DRAW,
    SAMPLED,
    NegativePool,
    impression_counts,
    negative_pool,
    negatives_shard,
)
from assets.training.sharded_join import Sharding
from configs.schema.usecase import UseCaseSpec
from runtime.shards import ShardResult, split_parquet


@dataclass(frozen=True)
class EventFiles:
    """The event log as Parquet files read end to end, with its size and last event time
    (from the footers and one column: what sizes the shards and ends the data)."""

    files: tuple[UPath, ...]
    columns: tuple[str, ...]  # the log's columns
    rows: int
    end: pd.Timestamp | None


@dataclass(frozen=True)
class ShardedLabels:
    """The label rows (and negatives) in label order on disk, and how they came to be."""

    labels: LabelFile
    dropped_immature: int
    negatives: int
    shard_results: tuple[ShardResult, ...]


class LogScan:
    """What the label rows need from the whole log, counted batch by batch as it is split."""

    def __init__(
        self,
        spec: UseCaseSpec,
        model: str,
        limit: pd.Timestamp | None,
        impressions: tuple[str, str] | None,
        gather_items: bool,
    ) -> None:
        self.spec = spec
        self.required = required_fields(spec, model)
        self.labels = label_columns(spec, model)
        self.nulls: dict[str, int] = {}
        self.first: dict[str, list[int]] = {}
        self.limit = limit  # rows after it are too young for final labels
        self.immature = 0
        self.impressions = impressions  # (item key, time) to count, for sampled negatives
        self.shown: pd.Series | None = None
        self.gather_items = gather_items  # the items seen, in first-seen order (no item table)
        self.items: pd.Index | None = None

    def add(self, batch: pa.RecordBatch, start: int) -> None:
        """Count one batch of the log; ``start``: its first row's place in the whole log."""
        for column in dict.fromkeys([*self.required, *self.labels.values()]):
            missing = pc.is_null(batch.column(column), nan_is_null=True)
            count = pc.sum(missing).as_py() or 0
            if count:
                self.nulls[column] = self.nulls.get(column, 0) + count
                first = self.first.setdefault(column, [])
                at = np.flatnonzero(missing.to_numpy(zero_copy_only=False))[
                    : NULL_SAMPLE - len(first)
                ]
                first += (at + start).tolist()
        time = self.spec.events.timestamp
        if self.limit is not None and time is not None:
            times = batch.column(time).to_pandas()
            self.immature += int((~(times <= self.limit)).sum())
        if self.impressions is not None:
            key, when = self.impressions
            frame = batch.select([key, when]).to_pandas()
            counts = impression_counts(frame, key, when)
            self.shown = counts if self.shown is None else self.shown.add(counts, fill_value=0)
            if self.gather_items:
                seen = pd.Index(pd.unique(frame[key]))
                known = self.items
                self.items = seen if known is None else known.append(seen[~seen.isin(known)])

    def check(self) -> None:
        """Fail as the one-pass check fails: the first null key or time, then labels."""
        for column, field in self.required.items():
            if self.nulls.get(column):
                raise null_value_error(
                    self.spec, field, column, self.nulls[column], self.first[column]
                )
        for name, column in self.labels.items():
            if self.nulls.get(column):
                raise null_label_error(self.spec, name, column, self.nulls[column])


def _pool(
    spec: UseCaseSpec, model: str, scan: LogScan, catalog: pd.DataFrame | None
) -> NegativePool:
    """The negatives' pool from the scan's counts (the one-pass build counts the same)."""
    negatives = spec.model[model].negatives
    assert negatives is not None and scan.impressions is not None
    entity = spec.entities[negatives.entity]
    if catalog is None:
        catalog = pd.DataFrame({entity.key: scan.items if scan.items is not None else []})
    empty = pd.Series(
        [], dtype="float64", index=pd.MultiIndex.from_arrays([[], []], names=["day", "key"])
    )
    return negative_pool(
        key=entity.key,
        time=scan.impressions[1],
        labels=list(label_columns(spec, model).values()),
        catalog=catalog,
        appeared=entity.timestamp,
        shown=scan.shown if scan.shown is not None else empty,
        strategy=negatives.strategy,
        ratio=negatives.ratio,
        seed=negatives.seed,
    )


def _head(path: str) -> pd.DataFrame:
    """A shard output's columns and dtypes, as pandas reads the file (its own metadata)."""
    with pq.ParquetFile(path) as file:
        first = next(file.iter_batches(batch_size=1), None)
        schema = file.schema_arrow
        table = schema.empty_table() if first is None else pa.Table.from_batches([first], schema)
    return table.to_pandas().head(0).copy()


def _sorted(
    sources: Sequence[ShardResult],
    drawn: Sequence[ShardResult] | None,
    folder: Path,
    order: list[str],
) -> LabelFile:
    """The outputs (and draws, for a model that samples negatives) as one file sorted by
    ``order``, out of core, with the whole frame's dtypes."""
    heads = [_head(r.output) for r in [*sources, *(drawn or ())]]
    dtypes = pd.concat(heads, ignore_index=True).dtypes.drop([EVENT_ROW, DRAW], errors="ignore")
    target = folder / "labels.parquet"
    full = [literal(r.output) for r in sources if r.rows]
    if not full:
        empty = heads[0][list(dtypes.index)]
        pq.write_table(pa.Table.from_pandas(empty, preserve_index=False), target)
        return LabelFile(target, 0, dtypes)
    rows = f"SELECT * FROM read_parquet([{', '.join(full)}], union_by_name = true)"
    dropped = [EVENT_ROW]
    if drawn is not None:
        rows = f"SELECT *, 0::BIGINT AS {quote(DRAW)} FROM ({rows})"
        draws = [literal(r.output) for r in drawn if r.rows]
        if draws:
            rows += f" UNION ALL BY NAME SELECT * FROM read_parquet([{', '.join(draws)}], union_by_name = true)"
        dropped.append(DRAW)
    with sorting_connection(folder / "spill") as con:
        con.sql(
            f"COPY (SELECT * EXCLUDE ({', '.join(quote(c) for c in dropped)}) FROM ({rows})"
            f" ORDER BY {', '.join(quote(c) for c in order)}) TO {literal(target)}"
            " (FORMAT parquet)"
        )
    return LabelFile(target, pq.read_metadata(target).num_rows, dtypes)


def sharded_label_rows(
    spec: UseCaseSpec,
    model: str,
    log: EventFiles,
    sharding: Sharding,
    folder: Path,
    catalog: pd.DataFrame | None = None,
) -> ShardedLabels:
    """The label rows of ``model`` (and its sampled negatives) from ``log``, in shards run by
    ``sharding``'s engine, written in label order under ``folder`` (a workspace the caller
    removes once the set is written)."""
    columns = label_event_columns(spec, model, log.columns)
    time = spec.events.timestamp
    labels = list(label_columns(spec, model))
    cutoff = log.end if time else None
    limit = None if cutoff is None else cutoff - maturity(spec, labels)
    negatives = spec.model[model].negatives
    impressions = (spec.entities[negatives.entity].key, time) if negatives and time else None
    scan = LogScan(spec, model, limit, impressions, catalog is None)
    inputs = split_parquet(
        [str(f) for f in log.files],
        [shard_key(spec, model, columns)],
        sharding.shards,
        folder / "events",
        columns=columns,
        numbered=EVENT_ROW,
        observe=scan.add,
    )
    scan.check()
    function = partial(
        label_rows_shard,
        spec=spec,
        model=model,
        columns=tuple(row_columns(spec, model, columns)),
        cutoff=cutoff,
        positives=label_columns(spec, model)[labels[0]] if negatives else None,
    )
    results = sharding.engine.run(function, inputs)  # an empty log: one empty shard
    drawn: list[ShardResult] | None = None
    order = [EVENT_ROW]
    if negatives is not None:
        identity = [*key_columns(spec, model), time]
        positives = [r.output for r in results if r.rows]
        draws = positives and split_parquet(
            positives, [identity[0]], sharding.shards, folder / "draws"
        )
        draw = partial(
            negatives_shard,
            pool=_pool(spec, model, scan, catalog),
            identity=tuple(identity),
            order=EVENT_ROW,
        )
        drawn = sharding.engine.run(draw, draws) if draws else []
        order = [AS_OF, SAMPLED, EVENT_ROW, DRAW]
    file = _sorted(results, drawn, folder, order)
    negatives_drawn = sum(r.rows for r in drawn or ())
    return ShardedLabels(file, scan.immature, negatives_drawn, (*results, *(drawn or ())))
