"""When each outcome became known: the time axis of label aggregates and of labels as known.

A label states it with ``available_at`` (a column of arrival times, fraud chargebacks) or
``available_after`` (a fixed delay after the event, for data without a label-time column; ``0s``
is "at the event"). The label column and its ``outcomes`` share that moment. Both training (a
label not arrived by the cutoff reads 0) and the feature tables (an aggregate over an outcome moves
when it arrives) read it from here, so they cannot disagree.
"""

from __future__ import annotations

import pandas as pd

from configs.schema.base import parse_duration
from configs.schema.usecase import UseCaseSpec

KNOWN_AT = "known_at__"  # prefix of the derived arrival-time columns (one per delayed label)


def known_at(spec: UseCaseSpec, label: str, events: pd.DataFrame) -> pd.Series | None:
    """When each row's ``label`` became known, or None when it is known at the event itself."""
    rule = spec.labels[label]
    if rule.available_at is not None:
        return events[rule.available_at]
    if rule.available_after is not None and spec.events.timestamp is not None:
        delay = pd.Timedelta(parse_duration(rule.available_after))
        if delay > pd.Timedelta(0):
            return events[spec.events.timestamp] + delay
    return None


def _axis(spec: UseCaseSpec, label: str) -> str | None:
    """The events column holding ``label``'s arrival times; None for "at the event"."""
    rule = spec.labels[label]
    if rule.available_at is not None:
        return rule.available_at
    if rule.available_after is not None and parse_duration(rule.available_after).total_seconds():
        return f"{KNOWN_AT}{label}"
    return None


def outcome_axes(spec: UseCaseSpec) -> dict[str, str]:
    """Outcome columns (labels and their ``outcomes``) that become known after the event,
    mapped to the column of their arrival times (see :func:`with_arrival_times`)."""
    axes: dict[str, str] = {}
    for name, rule in spec.labels.items():
        axis = _axis(spec, name)
        if axis is not None:
            for column in (rule.column, *rule.outcomes):
                axes.setdefault(column, axis)
    return axes


def with_arrival_times(spec: UseCaseSpec, events: pd.DataFrame) -> pd.DataFrame:
    """``events`` plus one ``known_at__<label>`` column per label with a non-zero fixed delay."""
    derived = {
        axis: known_at(spec, name, events)
        for name, rule in spec.labels.items()
        if rule.available_at is None and (axis := _axis(spec, name)) is not None
    }
    return events.assign(**derived) if derived else events
