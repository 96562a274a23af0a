"""Label rows: the events a model learns from, with the moment each prediction would be made.

A prediction about an event is made just before it, so every label row is joined to features as
of ``event time - 1µs`` (``AS_OF``): the event itself, and anything stamped at the same instant,
is never part of its own features. Labels that arrive late (fraud chargebacks: ``available_at``,
or a fixed ``available_after`` delay) take the value known at the end of the data — a chargeback
that had not arrived yet is a 0, as in production — and rows younger than the labels' ``maturity``
are dropped: their labels are not final, and using their future values would train on
information nobody had. Rows read from ``split.test_file`` keep their mark, so the split can
send them to test.

On a sharded run (``execution``: more than one shard, or Ray) the rows are computed in shards of
whole evaluation units (cards, users), cut by the hash of the unit's key: every label row is a
function of its own event, the end of the whole log and its unit's history ("a positive of this
card was known before"), so each shard computes its rows alone and the union, put back in the
log's order, is the one-pass frame (:func:`label_rows_shard`, run by
:mod:`assets.training.sharded_labels` over the event files streamed into shards).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
import pandas as pd

from assets.features.availability import known_at
from assets.models.evaluation_rows import evaluation_columns, evaluation_inputs, evaluation_unit
from assets.split.plan import mature_rows
from assets.training.model_views import (
    key_columns,
    label_columns,
    passthrough_columns,
    request_input_columns,
)
from assets.training.negatives import SAMPLED
from configs.schema.base import parse_duration
from configs.schema.split import TEST_FILE_ROWS
from configs.schema.usecase import UseCaseSpec
from runtime.shards import ShardResult

AS_OF = "as_of"
ONE_US = pd.Timedelta(1, "us")
# Data without time (LETOR): every row is "now", joined to attributes that never go stale.
TIMELESS_AS_OF = pd.Timestamp("2200-01-01")
EVENT_ROW = "__label_event_row"  # an event's position in the log, to restore the order
NULL_SAMPLE = 5  # the first rows a null-value error names


class LabelRowError(ValueError):
    """Label events that cannot be joined: a null key or timestamp (names the config field)."""


@dataclass(frozen=True)
class LabelRows:
    """The label rows of one model, and how many events were left out and why."""

    frame: pd.DataFrame
    dropped_immature: int
    shard_results: tuple[ShardResult, ...] = ()  # where each shard ran, when sharded


def null_value_error(
    spec: UseCaseSpec, field: str, column: str, count: int, sample: list[int]
) -> LabelRowError:
    """Label events without a join key or time: ``sample``, the first rows' positions."""
    return LabelRowError(
        f"{spec.name}: {field} ({column!r}): {count} label events have a null "
        f"value (first rows: {sample}); a label row needs every join key and its event "
        "time, so fix or filter the source"
    )


def null_label_error(spec: UseCaseSpec, name: str, column: str, count: int) -> LabelRowError:
    return LabelRowError(
        f"{spec.name}: labels.{name} ({column!r}): {count} label events have a null label"
    )


def required_fields(spec: UseCaseSpec, model: str) -> dict[str, str]:
    """The columns a label event must have a value in (join keys, time), each with the spec
    field that declares it, in the order they are checked."""
    time = spec.events.timestamp
    return _key_fields(spec, key_columns(spec, model)) | (
        {time: "events.timestamp"} if time else {}
    )


def _check_not_null(spec: UseCaseSpec, frame: pd.DataFrame, columns: dict[str, str]) -> None:
    """Fail on null join keys or timestamps, naming the spec field that declares each."""
    for column, field in columns.items():
        nulls = frame[column].isna()
        if nulls.any():
            sample = frame.index[nulls][:NULL_SAMPLE].tolist()
            raise null_value_error(spec, field, column, int(nulls.sum()), sample)


def _key_fields(spec: UseCaseSpec, keys: list[str]) -> dict[str, str]:
    owner = {entity.key: name for name, entity in spec.entities.items()}
    return {key: f"entities.{owner[key]}.key" for key in keys}


def maturity(spec: UseCaseSpec, labels: list[str]) -> pd.Timedelta:
    """The longest maturity of the given labels: how old a row must be for all to be final."""
    waits = [pd.Timedelta(parse_duration(spec.labels[name].maturity)) for name in labels]
    return max(waits, default=pd.Timedelta(0))


def _labels_as_known(
    spec: UseCaseSpec, model: str, frame: pd.DataFrame, events: pd.DataFrame, cutoff: pd.Timestamp
) -> pd.DataFrame:
    """Delayed labels as known at ``cutoff``: not arrived yet means 0."""
    updates = {}
    for name, column in label_columns(spec, model).items():
        arrival = known_at(spec, name, events)
        if arrival is not None:
            arrived = (arrival <= cutoff).to_numpy()
            updates[column] = frame[column].where(arrived, 0)
    return frame.assign(**updates) if updates else frame


def row_columns(spec: UseCaseSpec, model: str, events: Collection[str]) -> list[str]:
    """The events columns a label row keeps: keys, time, group, labels, request-time inputs
    (``events``: the log's columns)."""
    keys = key_columns(spec, model)
    labels = label_columns(spec, model)
    time = spec.events.timestamp
    group = spec.events.group
    columns = list(dict.fromkeys([*keys, *([time] if time else []), *([group] if group else [])]))
    carried = (*passthrough_columns(spec, model), *request_input_columns(spec, model))
    columns += [c for c in dict.fromkeys((*labels.values(), *carried)) if c not in columns]
    if TEST_FILE_ROWS in events:  # which rows came from split.test_file
        columns.append(TEST_FILE_ROWS)
    return columns


def label_event_columns(spec: UseCaseSpec, model: str, present: Collection[str]) -> list[str]:
    """The events columns :func:`label_rows` and the training set built on its rows read, in
    the log's order (``present``: the log's columns): what the training-set asset reads from
    the event files instead of every column. The rows' own columns, what the evaluation
    columns are computed from, and each label's arrival times (labels as known, negatives'
    impressions: the sampled entity's key and the time, both among the rows' columns)."""
    arrivals = [spec.labels[name].available_at for name in spec.model[model].labels]
    wanted = {
        *row_columns(spec, model, present),
        *evaluation_inputs(spec, model),
        *(a for a in arrivals if a),
    }
    return [c for c in present if c in wanted]


def _rows(
    spec: UseCaseSpec,
    model: str,
    events: pd.DataFrame,
    columns: list[str],
    cutoff: pd.Timestamp | None,
    mature: np.ndarray | None,
) -> pd.DataFrame:
    """The label rows of ``events`` (all of them, or one shard), given the end of the whole
    data (``cutoff``) and which rows are mature by it; both None for data without time."""
    frame = events[columns]
    # the event id, the unit and "a positive was known before" for the YAML's evaluation; before
    # the maturity filter, so rows dropped as immature still count as known history
    frame = frame.assign(**evaluation_columns(spec, model, events))
    if cutoff is not None and mature is not None:
        frame = _labels_as_known(spec, model, frame, events, cutoff)
        frame = frame[mature]
        as_of = frame[spec.events.timestamp].dt.floor("us") - ONE_US
    else:
        as_of = pd.Series(TIMELESS_AS_OF, index=frame.index)
    return frame.assign(**{AS_OF: as_of.astype("datetime64[us]")})


def label_rows(spec: UseCaseSpec, model: str, events: pd.DataFrame) -> LabelRows:
    """The rows model ``model`` learns from: keys, time, labels, request-time columns, as-of.

    In one pass over ``events``; a sharded build computes the same rows shard by shard from
    the event files (:mod:`assets.training.sharded_labels`), with the same checks and messages.
    """
    labels = label_columns(spec, model)
    time = spec.events.timestamp
    columns = row_columns(spec, model, events.columns)
    _check_not_null(spec, events, required_fields(spec, model))
    for name, column in labels.items():
        if events[column].isna().any():
            raise null_label_error(spec, name, column, int(events[column].isna().sum()))
    cutoff, mature, dropped = None, None, 0
    if time:
        cutoff = events[time].max()
        mature = mature_rows(events[time], maturity(spec, list(labels))).to_numpy()
        dropped = int((~mature).sum())
    frame = _rows(spec, model, events, columns, cutoff, mature).reset_index(drop=True)
    return LabelRows(frame, dropped)


def label_rows_shard(
    source: str,
    target: str,
    *,
    spec: UseCaseSpec,
    model: str,
    columns: tuple[str, ...],
    cutoff: pd.Timestamp | None,
    positives: str | None = None,
) -> int:
    """One shard of whole units: its events (with their places in the log, ``EVENT_ROW``) from
    ``source``, its label rows and their places to ``target``, in the log's order.

    ``cutoff`` is the end of the whole log (None without time): labels are taken as known
    then, and a row is mature by it. With ``positives`` (a label column, for a model that
    samples negatives) only the rows positive in it are written, marked not ``SAMPLED``.
    Module-level, its settings bound by ``functools.partial``, so Ray ships it by reference.
    """
    events = pd.read_parquet(source)
    numbers = events.pop(EVENT_ROW).to_numpy()
    mature = None
    if cutoff is not None:
        limit = cutoff - maturity(spec, list(label_columns(spec, model)))
        mature = (events[spec.events.timestamp] <= limit).to_numpy()
    frame = _rows(spec, model, events, list(columns), cutoff, mature)
    frame[EVENT_ROW] = numbers if mature is None else numbers[mature]
    if positives is not None:
        frame = frame[frame[positives] > 0]
        frame.insert(len(frame.columns) - 1, SAMPLED, False)
    frame.to_parquet(target, index=False)
    return len(frame)


def shard_key(spec: UseCaseSpec, model: str, present: Collection[str]) -> str:
    """The evaluation unit (card, user): "a positive of this unit was known before" looks at
    the unit's whole history, which a shard of whole units holds; else the first join key
    (``present``: the log's columns)."""
    unit = evaluation_unit(spec, model)
    return unit if unit in present else key_columns(spec, model)[0]
