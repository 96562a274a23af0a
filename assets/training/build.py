"""Build one model's training set: label rows, sampled negatives, point-in-time features, split.

Every feature is joined as of the label row's ``as_of`` through one interface,
:func:`assets.training.pit_join.point_in_time_join`, over the same Parquet files the Feast repo's
sources point at, with the same TTLs; its semantics are Feast's DuckDB offline store's (tested
against it). Columns are ``<table>__<feature>``, Feast's full feature names, so training and
online serving name every feature the same way. A ``time_since_last`` feature is stored as the
timestamp of the last event; here it becomes seconds before the row's as-of moment. Request-time
features (``features.<view>.request``) come last, computed from each row's own fields and its
joined features by :mod:`runtime.request_features`, the function ``/score`` and Feast call.

Given a shard engine (the use case's ``execution``), the label rows and the join run in shards
of whole entities (:mod:`assets.training.sharded_join`), here or as Ray tasks, when the engine
asks for more than one shard or is Ray; the frame is the same, row for row. Sampled negatives
stay one pass over all positives: each day's draws come from one seeded random stream and the
impressions of every item before that day, so drawing per shard would give other (equally
valid, but different) negatives.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pandas as pd

from assets.features.aggregates import CREATED_TIMESTAMP, EVENT_TIMESTAMP
from assets.split.plan import GAP, assign_split
from assets.training.label_rows import AS_OF, label_rows
from assets.training.model_views import (
    key_columns,
    label_columns,
    model_request_features,
    model_tables,
    passthrough_columns,
)
from assets.training.negatives import SAMPLED, draw_negatives, negative_pool, sharded_negatives
from assets.training.pit_join import FeatureTable, point_in_time_join
from assets.training.sharded_join import Sharding, plan_sharding, sharded_point_in_time_join
from configs.schema.split import TEST_FILE_ROWS
from configs.schema.usecase import UseCaseSpec
from runtime.models.features import LAST_EVENT_AT, SECONDS_SINCE, seconds_since_last
from runtime.request_features import add_request_features
from runtime.shards import ShardEngine, ShardResult

SPLIT = "split"


@dataclass(frozen=True)
class TrainingSet:
    """A training set and the counts that explain its size."""

    frame: pd.DataFrame
    feature_columns: list[str]
    label_columns: list[str]
    dropped_immature: int
    dropped_gap: int
    negatives: int
    shards: int = 1
    shard_results: tuple[ShardResult, ...] = ()  # every shard run, when sharded


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


def join_features(
    spec: UseCaseSpec, model: str, frame: pd.DataFrame, table_paths: dict[str, str]
) -> tuple[pd.DataFrame, list[str]]:
    """``frame`` (keys and ``as_of``) with the model's features as of each row; training sets
    and the serving funnel's candidate rows both go through here."""
    joined, features, _ = _join_features(spec, model, frame, table_paths, None)
    return joined, features


def _join_features(
    spec: UseCaseSpec,
    model: str,
    frame: pd.DataFrame,
    table_paths: dict[str, str],
    sharding: Sharding | None,
) -> tuple[pd.DataFrame, list[str], list[ShardResult]]:
    """:func:`join_features`, in shards when ``sharding`` is given; also the shard runs."""
    tables = _feature_tables(spec, model, table_paths)
    results: list[ShardResult] = []
    if not tables:
        joined = frame.copy()  # request-time (passthrough) features only, e.g. LETOR
    elif sharding is None:
        joined = point_in_time_join(frame, tables, as_of=AS_OF, prefix_features=True)
    else:
        joined, results = sharded_point_in_time_join(
            frame, tables, sharding, as_of=AS_OF, prefix_features=True
        )
    features = [name for table in tables for name in table.output_names(True)]
    if any(LAST_EVENT_AT in c for c in features):
        joined = seconds_since_last(joined, joined[AS_OF])
        features = [c for c in joined.columns if c in set(features) or SECONDS_SINCE in c]
    return joined, features, results


def build_training_set(
    spec: UseCaseSpec,
    model: str,
    events: pd.DataFrame,
    split_plan: pd.DataFrame,
    table_paths: dict[str, str],
    catalog: pd.DataFrame | None = None,
    engine: ShardEngine | None = None,
) -> TrainingSet:
    """The training set of ``model``: one row per label row (and sampled negative).

    ``engine`` (opened by the caller from the use case's ``execution``) runs the label rows and
    the join in shards when it asks for more than one or is Ray; None or one local shard is
    the one-pass path.
    """
    sharding = plan_sharding(engine, len(events), f"{spec.name}/training_sets/{model}")
    rows = label_rows(spec, model, events, sharding)
    frame = rows.frame
    labels = list(label_columns(spec, model).values())
    negatives = spec.model[model].negatives
    drawn_by: list[ShardResult] = []
    sampled = 0
    if negatives is not None:
        entity = spec.entities[negatives.entity]
        time = spec.events.timestamp
        pool = negative_pool(
            key=entity.key,
            time=time,
            labels=labels,
            catalog=catalog if catalog is not None else events[[entity.key]].drop_duplicates(),
            appeared=entity.timestamp,
            impressions=events[[entity.key, time]],
            strategy=negatives.strategy,
            ratio=negatives.ratio,
            seed=negatives.seed,
        )
        positives = frame[frame[labels[0]] > 0].assign(**{SAMPLED: False})
        identity = [*key_columns(spec, model), time]
        if sharding is None:
            drawn = draw_negatives(positives, pool, identity)
        else:
            drawn, drawn_by = sharded_negatives(positives, pool, identity, sharding)
        sampled = len(drawn)
        frame = pd.concat([positives, drawn], ignore_index=True)
        frame = frame.sort_values(AS_OF, kind="stable", ignore_index=True)
    joined, features, joined_by = _join_features(spec, model, frame, table_paths, sharding)
    requested = model_request_features(spec, model)
    joined = add_request_features(joined, requested)
    features += [feature.column for feature in requested]
    joined[SPLIT] = assign_split(
        spec.split, joined, split_plan, spec.events.timestamp, spec.events.group
    )
    joined = joined.drop(columns=TEST_FILE_ROWS, errors="ignore")
    in_gap = (joined[SPLIT] == GAP).to_numpy()
    joined = joined[~in_gap].reset_index(drop=True)
    joined[SPLIT] = joined[SPLIT].cat.remove_unused_categories()
    features += passthrough_columns(spec, model)
    return TrainingSet(
        joined,
        features,
        labels,
        rows.dropped_immature,
        int(in_gap.sum()),
        sampled,
        sharding.shards if sharding else 1,
        (*rows.shard_results, *drawn_by, *joined_by),
    )
