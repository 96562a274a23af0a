"""Checks across sections (a label naming an events column, a feature naming an entity, ...).

Each check returns ``(field path, message)`` pairs rather than raising, so the loader can point at
the exact YAML line of every problem and report them all at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from difflib import get_close_matches

from configs.schema.base import parse_duration
from configs.schema.batch import batch_problems
from configs.schema.evaluation_checks import check_evaluation
from configs.schema.issues import short_list
from configs.schema.leakage import check_leakage
from configs.schema.multiclass_checks import misplaced_multiclass
from configs.schema.request_checks import SERVED_PROBLEMS, check_request_features
from configs.schema.requirements import requirement_problems
from configs.schema.slo import slo_problems
from configs.schema.usecase import UseCaseSpec
from runtime.layout import SECONDS_SINCE_LAST, attributes_view, feature_column, feature_name

Loc = tuple[str | int, ...]
Problem = tuple[Loc, str]


def _missing(name: str, known: list[str], what: str) -> str:
    guess = get_close_matches(name, known, n=1)
    hint = f"; did you mean {guess[0]!r}?" if guess else ""
    return f"{what} {name!r} is not declared{hint} (declared: {short_list(known)})"


def _flagged_reasons(spec: UseCaseSpec) -> Iterator[Problem]:
    """``reasons: flagged`` needs a decision to flag: the served scorer (the first model /score
    serves) a binary classifier with decision bands, or a multiclass classifier."""
    served = [(n, m) for n, m in spec.model.items() if m.problem in SERVED_PROBLEMS]
    if not served:
        return
    name, model = served[0]
    if model.problem == "multiclass_classification":
        return
    if model.problem == "binary_classification" and model.decision_bands is not None:
        return
    why = (
        "has no decision_bands"
        if model.problem == "binary_classification"
        else f"is a {model.problem} model, with no decision"
    )
    yield (
        ("serving", "reasons"),
        f"flagged gives reasons to answers whose decision is not the benign one, and the served"
        f" model {name!r} {why}; use always or on_request",
    )


def _check_events(spec: UseCaseSpec) -> Iterator[Problem]:
    columns = spec.events.columns
    keys_in_events = [e.key for e in spec.entities.values() if e.key in columns]
    if not keys_in_events:
        yield (
            ("events", "columns"),
            (
                "no entity key appears in events.columns; declare at least one of "
                + ", ".join(e.key for e in spec.entities.values())
            ),
        )
    for name, entity in spec.entities.items():
        column = columns.get(entity.key)
        if column is not None and column.dtype != entity.dtype:
            yield (
                ("entities", name, "dtype"),
                (f"key {entity.key!r} is {entity.dtype} here but {column.dtype} in events.columns"),
            )
    tables = [e.table for e in spec.entities.values() if e.table]
    if "events" in tables or len(set(tables)) != len(tables):
        yield ("entities",), f"entity table names must be distinct and not 'events', got {tables}"


def _check_labels(spec: UseCaseSpec) -> Iterator[Problem]:
    columns = spec.events.columns
    for name, label in spec.labels.items():
        column = columns.get(label.column)
        if column is None:
            yield ("labels", name, "column"), _missing(label.column, list(columns), "events column")
        elif column.dtype not in ("int", "bool") and not (
            label.kind == "continuous" and column.dtype == "float"
        ):
            allowed = "int, bool or (kind: continuous) float"
            yield (
                ("labels", name, "column"),
                f"a label column must be {allowed}, not {column.dtype}",
            )
        if label.available_at is not None:
            when = columns.get(label.available_at)
            if when is None:
                yield (
                    ("labels", name, "available_at"),
                    _missing(label.available_at, list(columns), "events column"),
                )
            elif when.dtype != "timestamp":
                yield ("labels", name, "available_at"), "available_at must name a timestamp column"


def _check_source_and_split(spec: UseCaseSpec) -> Iterator[Problem]:
    if spec.split.method == "temporal" and spec.events.timestamp is None:
        yield (
            ("split", "method"),
            ("temporal split needs events.timestamp; use method: group for data without time"),
        )
    if spec.split.method == "temporal" and spec.source.kind == "synthetic" and not spec.split.dated:
        span = spec.source.days * 86400.0
        gap = parse_duration(spec.split.gap).total_seconds()
        for part in ("validation", "test"):
            share = getattr(spec.split, part)
            if share > 0 and gap >= share * span:
                yield (
                    ("split", "gap"),
                    (
                        f"gap {spec.split.gap} is not shorter than the {part} window"
                        f" ({share:g} of {spec.source.days} days): {part} would be empty"
                    ),
                )
    if spec.split.method == "group" and spec.events.group is None:
        yield ("split", "method"), "group split needs events.group (the query/request column)"
    if spec.source.kind == "file":
        allowed = ["events", *spec.entity_tables()]
        for table in spec.source.tables:
            if table not in allowed:
                yield ("source", "tables", table), _missing(table, allowed, "table")
        if spec.source.start_date is not None and spec.events.timestamp is None:
            yield ("source", "start_date"), "daily partitions need events.timestamp"


def _check_features(spec: UseCaseSpec) -> Iterator[Problem]:
    events = list(spec.events.columns)
    for view_name, view in spec.features.items():
        at = ("features", view_name)
        for i, entity in enumerate(view.entities):
            if entity not in spec.entities:
                yield (*at, "entities", i), _missing(entity, list(spec.entities), "entity")
        if view.aggregates and spec.events.timestamp is None:
            yield (*at, "aggregates"), "windowed aggregates need events.timestamp; use passthrough"
        for i, entity in enumerate(view.entities):
            key = spec.entities[entity].key if entity in spec.entities else None
            if key is not None and key not in events and (view.aggregates or view.passthrough):
                yield (
                    (*at, "entities", i),
                    f"key {key!r} of entity {entity!r} is not an events column",
                )
        for i, aggregate in enumerate(view.aggregates):
            if aggregate.column is not None and aggregate.column not in events:
                yield (
                    (*at, "aggregates", i, "column"),
                    _missing(aggregate.column, events, "events column"),
                )
        for i, column in enumerate(view.passthrough):
            if column not in events:
                yield (*at, "passthrough", i), _missing(column, events, "events column")
        attributes = [
            c
            for name in view.entities
            if name in spec.entities
            for c in spec.entities[name].columns
        ]
        for i, column in enumerate(view.attributes):
            if column not in attributes:
                yield (*at, "attributes", i), _missing(column, attributes, "entity column")


BASELINES = ("logistic_regression", "popularity", "random", "class_prior")
REGRESSION_BASELINES = ("mean", "last_value")  # a number per row, not a score to rank by


def _feature_names(spec: UseCaseSpec) -> list[str]:
    """Training-set feature columns the spec produces (``<table>__<feature>``)."""
    names = []
    for view_name, view in spec.features.items():
        names += [feature_column(view_name, name) for name in view.aggregate_names()]
        attributes = attributes_view(view_name)
        names += [feature_column(attributes, column) for column in view.attributes]
        names += list(view.passthrough)
    return names


def _check_baseline(spec: UseCaseSpec, model: str, baseline: str) -> Iterator[Problem]:
    at = ("model", model, "baseline")
    regression = spec.model[model].problem == "regression"
    named = REGRESSION_BASELINES if regression else BASELINES
    if baseline.startswith("feature:"):
        column = baseline.removeprefix("feature:")
        names = _feature_names(spec)
        if column not in names and not feature_name(column).startswith(SECONDS_SINCE_LAST):
            yield at, _missing(column, names, "feature")
    elif baseline not in named:
        known = ", ".join((*named, "feature:<column>"))
        guess = get_close_matches(baseline, named, n=1)
        hint = f"; did you mean {guess[0]!r}?" if guess else ""
        yield at, f"unknown baseline {baseline!r}{hint} (known: {known})"


def _check_models_and_experiment(spec: UseCaseSpec) -> Iterator[Problem]:
    labels = list(spec.labels)
    for model_name, model in spec.model.items():
        for i, label in enumerate(model.labels):
            if label not in spec.labels:
                yield ("model", model_name, "labels", i), _missing(label, labels, "label")
        for i, view in enumerate(model.features):
            if view not in spec.features:
                yield (
                    ("model", model_name, "features", i),
                    _missing(view, list(spec.features), "feature view"),
                )
        if model.baseline is not None:
            yield from _check_baseline(spec, model_name, model.baseline)
        if model.value_feature is not None and model.problem != "multi_task":
            yield (
                ("model", model_name, "value_feature"),
                "value_feature applies to problem multi_task only",
            )
        if model.decision_bands is not None and model.problem != "binary_classification":
            yield (
                ("model", model_name, "decision_bands"),
                "decision_bands apply to problem binary_classification only",
            )
        if model.negatives is not None:
            at = ("model", model_name, "negatives", "entity")
            entity = spec.entities.get(model.negatives.entity)
            if entity is None:
                yield at, _missing(model.negatives.entity, list(spec.entities), "entity")
            elif entity.key not in spec.events.columns:
                yield (
                    at,
                    f"key {entity.key!r} of entity {model.negatives.entity!r} is not an events column",
                )
            if spec.events.timestamp is None:
                yield (
                    at,
                    "sampled negatives need events.timestamp (popularity is counted over time)",
                )
    for label in spec.quality.label_rate:
        if label not in spec.labels:
            yield ("quality", "label_rate", label), _missing(label, labels, "label")
    if spec.serving is not None and spec.serving.k > spec.serving.candidates:
        yield (
            ("serving", "k"),
            f"k ({spec.serving.k}) exceeds candidates ({spec.serving.candidates})",
        )
    if spec.serving is not None and spec.serving.reasons == "flagged":
        yield from _flagged_reasons(spec)
    for i, entity in enumerate(spec.serving.cached_entities if spec.serving else ()):
        if entity not in spec.entities:
            yield ("serving", "cached_entities", i), _missing(entity, list(spec.entities), "entity")
    experiment = spec.experiment
    if experiment is not None:
        if experiment.metric not in spec.labels:
            yield ("experiment", "metric"), _missing(experiment.metric, labels, "label")
        if experiment.unit not in spec.events.columns:
            yield (
                ("experiment", "unit"),
                _missing(experiment.unit, list(spec.events.columns), "events column"),
            )
        for i, guardrail in enumerate(experiment.guardrails):
            if guardrail.kind == "label" and guardrail.metric not in spec.labels:
                yield (
                    ("experiment", "guardrails", i, "metric"),
                    _missing(guardrail.metric, labels, "label"),
                )


def cross_check(spec: UseCaseSpec) -> list[Problem]:
    """Every cross-section problem of a spec that passed field validation."""
    problems: list[Problem] = []
    for check in (
        _check_events,
        _check_labels,
        _check_source_and_split,
        _check_features,
        _check_models_and_experiment,
        check_leakage,
        misplaced_multiclass,
        check_evaluation,
        check_request_features,
        requirement_problems,
        slo_problems,
        batch_problems,
    ):
        problems.extend(check(spec))
    return list(dict.fromkeys(problems))  # a section-wide problem once, not once per model
