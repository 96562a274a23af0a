"""Build one model's training set: label rows, sampled negatives, point-in-time features, split.

Every feature is joined as of the label row's ``as_of`` through one interface,
:func:`assets.training.pit_join.point_in_time_join`, over the same Parquet files the Feast repo's
sources point at, with the same TTLs; its semantics are Feast's DuckDB offline store's (tested
against it). Columns are ``<table>__<feature>``, Feast's full feature names, so training and
online serving name every feature the same way. A ``time_since_last`` feature is stored as the
timestamp of the last event; here it becomes seconds before the row's as-of moment. Request-time
features (``features.<view>.request``) come last, computed from each row's own fields and its
joined features by :mod:`runtime.request_features`, the function ``/score`` and Feast call.

Given a shard engine (the use case's ``execution``), the label rows, the sampled negatives and
the join run in shards of whole entities (:mod:`assets.training.sharded_labels`,
:mod:`assets.training.sharded_join`), here or as Ray tasks, when the engine asks for more than
one shard or is Ray; the set is the same, row for row. The log is then streamed from its files
and the label rows wait on disk in label order.

The set is written, not returned: past the join, ``CHUNK_ROWS`` label rows with their features
are finished (every step after the join works row by row) and parked as parts, and the parts
become the asset's one Parquet file (:mod:`assets.training.set_file`). On a sharded build
neither the label rows nor their features are ever held whole.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import timedelta
from pathlib import Path

import pandas as pd
from upath import UPath

from assets.features.aggregates import CREATED_TIMESTAMP, EVENT_TIMESTAMP
from assets.raw.event_log import read_events
from assets.split.plan import GAP, assign_split
from assets.training.label_file import LabelFile
from assets.training.label_rows import AS_OF, label_event_columns, label_rows
from assets.training.model_views import (
    key_columns,
    label_columns,
    model_request_features,
    model_tables,
    passthrough_columns,
)
from assets.training.negatives import SAMPLED, draw_negatives, impression_counts, negative_pool
from assets.training.pit_join import FeatureTable, point_in_time_join
from assets.training.set_file import SetParts
from assets.training.sharded_join import (
    CHUNK_ROWS,
    Sharding,
    plan_sharding,
    sharded_join_chunks,
)
from assets.training.sharded_labels import EventFiles, sharded_label_rows
from configs.schema.split import TEST_FILE_ROWS
from configs.schema.usecase import UseCaseSpec
from runtime.models.features import LAST_EVENT_AT, SECONDS_SINCE, seconds_since_last
from runtime.request_features import add_request_features
from runtime.shards import ShardEngine, ShardResult, shard_workspace

SPLIT = "split"


@dataclass(frozen=True)
class TrainingSetFile:
    """What a training-set build wrote, and the counts that explain its size."""

    path: UPath
    rows: int
    feature_columns: list[str]
    label_columns: list[str]
    dropped_immature: int
    dropped_gap: int
    negatives: int
    shards: int = 1
    shard_results: tuple[ShardResult, ...] = ()  # every shard run, when sharded


@dataclass(frozen=True, kw_only=True)
class TrainingSet(TrainingSetFile):
    """A training set read back whole (tests, benchmarks, the model stage's view of it)."""

    frame: pd.DataFrame


def _feature_tables(spec: UseCaseSpec, model: str, paths: dict[str, str]) -> list[FeatureTable]:
    timeless = spec.events.timestamp is None
    return [
        FeatureTable(
            name=table.name,
            frame=paths[table.name],
            keys=table.keys,
            features=table.feature_names,
            ttl=timedelta(0) if timeless else table.ttl,  # zero: never stale
            event_timestamp=EVENT_TIMESTAMP,
            created_timestamp=CREATED_TIMESTAMP,
        )
        for table in model_tables(spec, model)
    ]


def _with_seconds_since(
    joined: pd.DataFrame, tables: list[FeatureTable]
) -> tuple[pd.DataFrame, list[str]]:
    """The joined rows with every last-event moment as seconds before the row's as-of, and the
    feature columns in their final order."""
    features = [name for table in tables for name in table.output_names(True)]
    if any(LAST_EVENT_AT in c for c in features):
        joined = seconds_since_last(joined, joined[AS_OF])
        features = [c for c in joined.columns if c in set(features) or SECONDS_SINCE in c]
    return joined, features


def join_features(
    spec: UseCaseSpec, model: str, frame: pd.DataFrame, table_paths: dict[str, str]
) -> tuple[pd.DataFrame, list[str]]:
    """``frame`` (keys and ``as_of``) with the model's features as of each row; training sets
    and the serving funnel's candidate rows both go through here."""
    tables = _feature_tables(spec, model, table_paths)
    return _with_seconds_since(_one_pass(frame, tables), tables)


def _one_pass(frame: pd.DataFrame, tables: list[FeatureTable]) -> pd.DataFrame:
    """``frame`` with every table's features as of its rows, in one pass (a copy of it when
    the model has no feature tables: request-time features only, e.g. LETOR)."""
    if not tables:
        return frame.copy()
    return point_in_time_join(frame, tables, as_of=AS_OF, prefix_features=True)


@contextmanager
def _joined_chunks(
    labels: pd.DataFrame | LabelFile,
    tables: list[FeatureTable],
    sharding: Sharding | None,
    chunk_rows: int,
) -> Iterator[tuple[Iterator[pd.DataFrame], list[ShardResult]]]:
    """The label rows with their features, a chunk at a time in label order (one chunk, the
    whole frame, on the one-pass path), and the shard runs."""
    if sharding is not None:
        with sharded_join_chunks(
            labels, tables, sharding, as_of=AS_OF, prefix_features=True, chunk_rows=chunk_rows
        ) as (chunks, results):
            yield chunks, results
        return
    assert isinstance(labels, pd.DataFrame)  # the one-pass path holds its label rows
    yield iter([_one_pass(labels, tables)]), []


def _with_negatives(
    spec: UseCaseSpec,
    model: str,
    events: pd.DataFrame,
    frame: pd.DataFrame,
    catalog: pd.DataFrame | None,
) -> tuple[pd.DataFrame, int]:
    """The positive label rows and their sampled negatives in as-of order (the label rows as
    they are when the model samples none), in one pass; and the negatives drawn."""
    negatives = spec.model[model].negatives
    if negatives is None:
        return frame, 0
    labels = list(label_columns(spec, model).values())
    entity = spec.entities[negatives.entity]
    time = spec.events.timestamp
    pool = negative_pool(
        key=entity.key,
        time=time,
        labels=labels,
        catalog=catalog if catalog is not None else events[[entity.key]].drop_duplicates(),
        appeared=entity.timestamp,
        shown=impression_counts(events, entity.key, time),
        strategy=negatives.strategy,
        ratio=negatives.ratio,
        seed=negatives.seed,
    )
    positives = frame[frame[labels[0]] > 0].assign(**{SAMPLED: False})
    drawn = draw_negatives(positives, pool, [*key_columns(spec, model), time])
    frame = pd.concat([positives, drawn], ignore_index=True)
    return frame.sort_values(AS_OF, kind="stable", ignore_index=True), len(drawn)


def _finished(
    spec: UseCaseSpec,
    model: str,
    joined: pd.DataFrame,
    tables: list[FeatureTable],
    split_plan: pd.DataFrame,
) -> tuple[pd.DataFrame, list[str], int]:
    """One chunk of joined rows as the set holds them: last-event moments as seconds, request
    features, the split, rows in a split gap left out. Row by row, so chunks add up to the
    whole. Also the feature columns and the rows left in the gap."""
    joined, features = _with_seconds_since(joined, tables)
    requested = model_request_features(spec, model)
    joined = add_request_features(joined, requested)
    features += [feature.column for feature in requested]
    joined[SPLIT] = assign_split(
        spec.split, joined, split_plan, spec.events.timestamp, spec.events.group
    )
    joined = joined.drop(columns=TEST_FILE_ROWS, errors="ignore")
    in_gap = (joined[SPLIT] == GAP).to_numpy()
    joined = joined[~in_gap].reset_index(drop=True)
    features += passthrough_columns(spec, model)
    return joined, features, int(in_gap.sum())


@contextmanager
def _parts_folder(sharding: Sharding | None) -> Iterator[Path]:
    """Where the finished chunks wait: the execution's storage when sharded (a disk, where a
    large set has room; ``/tmp`` may be memory), else a scratch folder (a small set)."""
    if sharding is not None:
        with shard_workspace(sharding.engine.execution, f"{sharding.label}/parts") as folder:
            yield folder
        return
    with tempfile.TemporaryDirectory(prefix="training-set-") as scratch:
        yield Path(scratch)


@dataclass(frozen=True)
class LabelFrame:
    """A model's label rows (and sampled negatives) in as-of order, ready for the join: all
    that is left of the event log once they are drawn. In memory on the one-pass path, on
    disk (read a chunk at a time) when sharded."""

    labels: pd.DataFrame | LabelFile
    sharding: Sharding | None
    dropped_immature: int
    negatives: int
    shard_results: tuple[ShardResult, ...]


def _log_of(spec: UseCaseSpec, events: pd.DataFrame, folder: Path) -> EventFiles:
    """A frame of events as a one-file log, for the sharded path (tests, benchmarks)."""
    path = folder / "events.parquet"
    events.to_parquet(path, index=False)
    time = spec.events.timestamp
    end = events[time].max() if time and len(events) else None
    return EventFiles((UPath(path),), tuple(events.columns), len(events), end)


@contextmanager
def training_rows(
    spec: UseCaseSpec,
    model: str,
    events: pd.DataFrame | EventFiles,
    catalog: pd.DataFrame | None = None,
    engine: ShardEngine | None = None,
) -> Iterator[LabelFrame]:
    """The label rows of ``model`` and its sampled negatives, drawn from ``events`` (a frame,
    or the log's files), for as long as the block lasts.

    ``engine`` (opened by the caller from the use case's ``execution``) runs them in shards
    when it asks for more than one or is Ray: the log is then streamed from its files, and the
    rows wait on disk (:mod:`assets.training.sharded_labels`). None or one local shard is the
    one-pass path, which reads the log's label columns whole. A caller that passes a frame of
    events without keeping a name for it lets it go before the join.
    """
    size = len(events) if isinstance(events, pd.DataFrame) else events.rows
    sharding = plan_sharding(engine, size, f"{spec.name}/training_sets/{model}")
    if sharding is None:
        if not isinstance(events, pd.DataFrame):
            events = read_events(events.files, label_event_columns(spec, model, events.columns))
        rows = label_rows(spec, model, events)
        frame, sampled = _with_negatives(spec, model, events, rows.frame, catalog)
        dropped = rows.dropped_immature
        del events, rows  # the label rows are all that is left of the log
        yield LabelFrame(frame, None, dropped, sampled, ())
        return
    with shard_workspace(sharding.engine.execution, f"{sharding.label}/labels") as folder:
        if isinstance(events, pd.DataFrame):
            events = _log_of(spec, events, folder)
        found = sharded_label_rows(spec, model, events, sharding, folder, catalog)
        yield LabelFrame(
            found.labels, sharding, found.dropped_immature, found.negatives, found.shard_results
        )


def write_training_set(
    spec: UseCaseSpec,
    model: str,
    rows: LabelFrame,
    split_plan: pd.DataFrame,
    table_paths: dict[str, str],
    target: UPath,
    sink: Callable[[pd.DataFrame, list[str]], None] | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> TrainingSetFile:
    """Write the training set of ``model`` to ``target``: one row per label row (and sampled
    negative) with its features as of just before it, ``chunk_rows`` label rows in memory at a
    time past the join, which runs in the label rows' shards (if any).

    ``sink`` sees every part of the finished set once, as written, with the set's feature
    columns (for metadata and the quality suite).
    """
    tables = _feature_tables(spec, model, table_paths)
    features: list[str] = []
    in_gap = 0
    with (
        _joined_chunks(rows.labels, tables, rows.sharding, chunk_rows) as (chunks, joined_by),
        _parts_folder(rows.sharding) as folder,
    ):
        parts = SetParts(folder, SPLIT)
        for chunk in chunks:
            finished, features, gap = _finished(spec, model, chunk, tables, split_plan)
            del chunk  # the joined chunk goes before the finished one is written
            in_gap += gap
            parts.add(finished)
            del finished
        each = None if sink is None else (lambda part: sink(part, features))
        written = parts.write(target, each)
    return TrainingSetFile(
        target,
        written,
        features,
        list(label_columns(spec, model).values()),
        rows.dropped_immature,
        in_gap,
        rows.negatives,
        rows.sharding.shards if rows.sharding else 1,
        (*rows.shard_results, *joined_by),
    )


def build_training_set(
    spec: UseCaseSpec,
    model: str,
    events: pd.DataFrame,
    split_plan: pd.DataFrame,
    table_paths: dict[str, str],
    catalog: pd.DataFrame | None = None,
    engine: ShardEngine | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> TrainingSet:
    """:func:`write_training_set` to a scratch file, read back whole: the frame the model stage
    loads from the asset's file."""
    with tempfile.TemporaryDirectory(prefix="training-set-") as folder:
        target = UPath(folder) / "training_set.parquet"
        with training_rows(spec, model, events, catalog, engine) as rows:
            written = write_training_set(
                spec, model, rows, split_plan, table_paths, target, chunk_rows=chunk_rows
            )
        counts = {f.name: getattr(written, f.name) for f in fields(written)}
        return TrainingSet(**counts, frame=pd.read_parquet(target))
