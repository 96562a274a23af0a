"""Build one model's training set: label rows, sampled negatives, point-in-time features, split.

Every feature is joined as of the label row's ``as_of`` through one interface,
:func:`assets.training.pit_join.point_in_time_join`, over the same Parquet files the Feast repo's
sources point at, with the same TTLs; its semantics are Feast's DuckDB offline store's (tested
against it). Columns are ``<table>__<feature>``, Feast's full feature names, so training and
online serving name every feature the same way. A ``time_since_last`` feature is stored as the
timestamp of the last event; here it becomes seconds before the row's as-of moment. Request-time
features (``features.<view>.request``) come last, computed from each row's own fields and its
joined features by :mod:`runtime.request_features`, the function ``/score`` and Feast call.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pandas as pd

from assets.features.aggregates import CREATED_TIMESTAMP, EVENT_TIMESTAMP
from assets.split.plan import GAP, assign_split
from assets.training.label_rows import AS_OF, label_rows
from assets.training.model_views import (
    label_columns,
    model_request_features,
    model_tables,
    passthrough_columns,
)
from assets.training.negatives import SAMPLED, sample_negatives
from assets.training.pit_join import FeatureTable, point_in_time_join
from configs.schema.split import TEST_FILE_ROWS
from configs.schema.usecase import UseCaseSpec
from runtime.models.features import LAST_EVENT_AT, SECONDS_SINCE, seconds_since_last
from runtime.request_features import add_request_features

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
    tables = _feature_tables(spec, model, table_paths)
    joined = (
        point_in_time_join(frame, tables, as_of=AS_OF, prefix_features=True)
        if tables
        else frame.copy()  # request-time (passthrough) features only, e.g. LETOR
    )
    features = [name for table in tables for name in table.output_names(True)]
    if any(LAST_EVENT_AT in c for c in features):
        joined = seconds_since_last(joined, joined[AS_OF])
        features = [c for c in joined.columns if c in set(features) or SECONDS_SINCE in c]
    return joined, features


def build_training_set(
    spec: UseCaseSpec,
    model: str,
    events: pd.DataFrame,
    split_plan: pd.DataFrame,
    table_paths: dict[str, str],
    catalog: pd.DataFrame | None = None,
) -> TrainingSet:
    """The training set of ``model``: one row per label row (and sampled negative)."""
    rows = label_rows(spec, model, events)
    frame = rows.frame
    labels = list(label_columns(spec, model).values())
    negatives = spec.model[model].negatives
    sampled = 0
    if negatives is not None:
        entity = spec.entities[negatives.entity]
        positives = frame[frame[labels[0]] > 0].assign(**{SAMPLED: False})
        drawn = sample_negatives(
            positives,
            key=entity.key,
            time=spec.events.timestamp,
            labels=labels,
            catalog=catalog if catalog is not None else events[[entity.key]].drop_duplicates(),
            appeared=entity.timestamp,
            impressions=events[[entity.key, spec.events.timestamp]],
            strategy=negatives.strategy,
            ratio=negatives.ratio,
            seed=negatives.seed,
        )
        sampled = len(drawn)
        frame = pd.concat([positives, drawn], ignore_index=True)
        frame = frame.sort_values(AS_OF, kind="stable", ignore_index=True)
    joined, features = join_features(spec, model, frame, table_paths)
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
    return TrainingSet(joined, features, labels, rows.dropped_immature, int(in_gap.sum()), sampled)
