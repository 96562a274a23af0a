"""Label rows: the events a model learns from, with the moment each prediction would be made.

A prediction about an event is made just before it, so every label row is joined to features as
of ``event time - 1µs`` (``AS_OF``): the event itself, and anything stamped at the same instant,
is never part of its own features. Labels that arrive late (fraud chargebacks: ``available_at``,
or a fixed ``available_after`` delay) take the value known at the end of the data — a chargeback
that had not arrived yet is a 0, as in production — and rows younger than the labels' ``maturity``
are dropped: their labels are not final, and using their future values would train on
information nobody had. Rows read from ``split.test_file`` keep their mark, so the split can
send them to test.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from assets.features.availability import known_at
from assets.models.evaluation_rows import evaluation_columns
from assets.split.plan import mature_rows
from assets.training.model_views import (
    key_columns,
    label_columns,
    passthrough_columns,
    request_input_columns,
)
from configs.schema.base import parse_duration
from configs.schema.split import TEST_FILE_ROWS
from configs.schema.usecase import UseCaseSpec

AS_OF = "as_of"
ONE_US = pd.Timedelta(1, "us")
# Data without time (LETOR): every row is "now", joined to attributes that never go stale.
TIMELESS_AS_OF = pd.Timestamp("2200-01-01")


class LabelRowError(ValueError):
    """Label events that cannot be joined: a null key or timestamp (names the config field)."""


@dataclass(frozen=True)
class LabelRows:
    """The label rows of one model, and how many events were left out and why."""

    frame: pd.DataFrame
    dropped_immature: int


def _check_not_null(spec: UseCaseSpec, frame: pd.DataFrame, columns: dict[str, str]) -> None:
    """Fail on null join keys or timestamps, naming the spec field that declares each."""
    for column, field in columns.items():
        nulls = frame[column].isna()
        if nulls.any():
            sample = frame.index[nulls][:5].tolist()
            raise LabelRowError(
                f"{spec.name}: {field} ({column!r}): {int(nulls.sum())} label events have a null "
                f"value (first rows: {sample}); a label row needs every join key and its event "
                "time, so fix or filter the source"
            )


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


def label_rows(spec: UseCaseSpec, model: str, events: pd.DataFrame) -> LabelRows:
    """The rows model ``model`` learns from: keys, time, labels, request-time columns, as-of."""
    keys = key_columns(spec, model)
    labels = label_columns(spec, model)
    time = spec.events.timestamp
    group = spec.events.group
    columns = list(dict.fromkeys([*keys, *([time] if time else []), *([group] if group else [])]))
    row_columns = (*passthrough_columns(spec, model), *request_input_columns(spec, model))
    columns += [c for c in dict.fromkeys((*labels.values(), *row_columns)) if c not in columns]
    if TEST_FILE_ROWS in events:  # which rows came from split.test_file
        columns.append(TEST_FILE_ROWS)
    required = _key_fields(spec, keys) | ({time: "events.timestamp"} if time else {})
    _check_not_null(spec, events, required)
    for name, column in labels.items():
        if events[column].isna().any():
            raise LabelRowError(
                f"{spec.name}: labels.{name} ({column!r}): {int(events[column].isna().sum())} "
                "label events have a null label"
            )
    frame = events[columns]
    # the event id, the unit and "a positive was known before" for the YAML's evaluation; before
    # the maturity filter, so rows dropped as immature still count as known history
    frame = frame.assign(**evaluation_columns(spec, model, events))
    dropped = 0
    if time:
        cutoff = events[time].max()
        frame = _labels_as_known(spec, model, frame, events, cutoff)
        mature = mature_rows(events[time], maturity(spec, list(labels))).to_numpy()
        dropped = int((~mature).sum())
        frame = frame[mature]
        as_of = frame[time].dt.floor("us") - ONE_US
    else:
        as_of = pd.Series(TIMELESS_AS_OF, index=frame.index)
    frame = frame.assign(**{AS_OF: as_of.astype("datetime64[us]")}).reset_index(drop=True)
    return LabelRows(frame, dropped)
