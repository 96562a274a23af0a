"""Cross-section checks that keep outcomes out of features, and splits where they are stated.

A feature that aggregates a label (or a column revealing the same outcome, ``labels.<x>.outcomes``)
is only honest if it moves when the outcome became known: a chargeback counts from the day it
arrived, not from the transaction. Without an availability rule nothing says when that is, and
the aggregate silently counts the future: on real card-fraud data a forgotten rule gave PR-AUC
0.915 instead of the true ~0.72 (reported in issue 15). So such an aggregate is a validation
error naming it, until its label states ``available_at`` (a column) or ``available_after`` (a
delay, ``0s`` for "known at the event"). A passthrough of an outcome column is the answer itself
and always an error.

The split checks need other sections: cut dates must fall inside the data the source can produce,
and a fixed test file is read like ``source.tables.events``, so it needs a file source and must
merge with that table into a readable one.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from difflib import get_close_matches

from pydantic import ValidationError

from configs.schema.base import parse_duration
from configs.schema.source import FileSource, SyntheticSource
from configs.schema.split import TEST_FILE_ROWS
from configs.schema.usecase import UseCaseSpec

Problem = tuple[tuple[str | int, ...], str]


def _not_declared(name: str, known: list[str]) -> str:
    guess = get_close_matches(name, known, n=1)
    hint = f"; did you mean {guess[0]!r}?" if guess else ""
    return f"events column {name!r} is not declared{hint} (declared: {', '.join(known)})"


def outcome_owners(spec: UseCaseSpec) -> dict[str, list[str]]:
    """Every outcome column (label columns and their ``outcomes``) -> the labels it belongs to."""
    owners: dict[str, list[str]] = {}
    for name, label in spec.labels.items():
        for column in dict.fromkeys([label.column, *label.outcomes]):
            owners.setdefault(column, []).append(name)
    return owners


def _check_labels(spec: UseCaseSpec) -> Iterator[Problem]:
    columns = list(spec.events.columns)
    roles = {spec.events.timestamp: "events.timestamp", spec.events.group: "events.group"}
    roles |= {e.key: f"the key of entity {n!r}" for n, e in spec.entities.items()}
    for name, label in spec.labels.items():
        at = ("labels", name)
        if label.available_after is not None and spec.events.timestamp is None:
            yield (
                (*at, "available_after"),
                "a delay counts from events.timestamp, and these events have no time; drop it",
            )
        for i, column in enumerate(label.outcomes):
            if column not in spec.events.columns:
                yield (*at, "outcomes", i), _not_declared(column, columns)
            elif column == label.column:
                yield (*at, "outcomes", i), f"{column!r} is this label's own column; drop it"
            elif column in roles:
                yield (
                    (*at, "outcomes", i),
                    f"{column!r} is {roles[column]}, known at request time: not an outcome",
                )
    for column, names in outcome_owners(spec).items():
        rules = {spec.labels[n].availability_rule() for n in names}
        if len(rules) > 1:
            shown = "; ".join(f"labels.{n}: {spec.labels[n].availability_rule()}" for n in names)
            yield (
                ("labels", names[-1]),
                f"column {column!r} belongs to labels with different availability rules ({shown});"
                " a column becomes known once: give them the same rule",
            )


def _owner_text(spec: UseCaseSpec, column: str, name: str) -> str:
    label = spec.labels[name]
    role = "the column" if label.column == column else "an outcome column (outcomes)"
    return f"{column!r} is {role} of labels.{name}"


def _check_features(spec: UseCaseSpec) -> Iterator[Problem]:
    owners = outcome_owners(spec)
    for view_name, view in spec.features.items():
        at = ("features", view_name)
        for i, aggregate in enumerate(view.aggregates):
            unruled = [
                n
                for n in owners.get(aggregate.column or "", [])
                if not spec.labels[n].availability_rule()
            ]
            if unruled:
                name = unruled[0]
                yield (
                    (*at, "aggregates", i, "column"),
                    f"{_owner_text(spec, aggregate.column or '', name)}, which has no availability"
                    " rule: this aggregate would count outcomes before anyone knew them (label"
                    f" leakage). State when it is known: labels.{name}.available_at: <time column>"
                    f" or labels.{name}.available_after: <delay, e.g. 7d> (0s if known at the event"
                    " itself)",
                )
        for i, column in enumerate(view.passthrough):
            if column in owners:
                yield (
                    (*at, "passthrough", i),
                    f"{_owner_text(spec, column, owners[column][0])}: as a request-time feature it"
                    " hands the model the answer; aggregate it over past events instead",
                )


def _data_range(spec: UseCaseSpec) -> tuple[datetime, datetime] | None:
    """[first, end) of the event times the source can hold, when the YAML fixes it."""
    source = spec.source
    if isinstance(source, SyntheticSource):
        start = datetime.combine(source.start_date, datetime.min.time())
        return start, start + timedelta(days=source.days)
    if source.start_date is not None and source.end_date is not None:
        start = datetime.combine(source.start_date, datetime.min.time())
        return start, datetime.combine(source.end_date, datetime.min.time()) + timedelta(days=1)
    return None


def _check_cut_dates(spec: UseCaseSpec) -> Iterator[Problem]:
    split = spec.split
    bounds = _data_range(spec)
    if not split.dated or bounds is None:
        return
    first, end = bounds
    gap = parse_duration(split.gap)
    shown = f"the data runs {first:%Y-%m-%d} to {end - timedelta(microseconds=1):%Y-%m-%d}"
    cuts = [(field, getattr(split, field)) for field in ("validation_from", "test_from")]
    cuts = [(field, cut) for field, cut in cuts if cut is not None]
    field, earliest = cuts[0]
    if earliest - gap <= first:
        yield (
            ("split", field),
            f"{field} {earliest} (less the gap {split.gap}) is not after the first event time:"
            f" train would be empty ({shown})",
        )
    if split.validation_from and split.test_from and split.test_from - gap <= split.validation_from:
        yield (
            ("split", "gap"),
            f"gap {split.gap} before test_from {split.test_from} reaches back past"
            f" validation_from {split.validation_from}: validation would be empty",
        )
    for field, cut in cuts:
        if cut >= end:
            yield (
                ("split", field),
                f"{field} {cut} is after the data: that split would be empty ({shown})",
            )


def _check_test_file(spec: UseCaseSpec) -> Iterator[Problem]:
    split = spec.split
    if split.test_file is None:
        return
    at = ("split", "test_file")
    if not isinstance(spec.source, FileSource):
        yield at, "a fixed test file is read like source.tables.events: it needs source kind: file"
        return
    if TEST_FILE_ROWS in spec.events.columns:
        yield (
            ("events", "columns", TEST_FILE_ROWS),
            f"{TEST_FILE_ROWS!r} marks the test file's rows when split.test_file is given;"
            " rename this column",
        )
    try:
        split.test_table(spec.source)
    except ValidationError as error:
        for detail in error.errors():
            loc = tuple(str(p) for p in detail["loc"][2:])  # past ("tables", "events")
            message = detail["msg"].removeprefix("Value error, ")
            yield (*at, *loc), f"{message} (the events table's fields, then the test file's)"


def check_leakage(spec: UseCaseSpec) -> list[Problem]:
    """Outcome columns without an availability rule, and splits that cannot cut where stated."""
    return [
        *_check_labels(spec),
        *_check_features(spec),
        *_check_cut_dates(spec),
        *_check_test_file(spec),
    ]
