"""Request-time features against the rest of the YAML: what each reads, and whether it may.

An expression (:mod:`configs.schema.request_expressions`) names columns; only the whole spec
knows whether they exist and what they hold: an events column (a field of the request) by its
declared dtype, a joined feature ``<table>__<feature>`` by the aggregate or attribute that makes
it. Each problem is reported at ``features.<view>.request.<name>`` before anything runs: an
unknown column (with a did-you-mean), a transform given the wrong kind of column, a label or
what reveals it (the answer itself, at request time), a feature Feast cannot hand an on-demand
view, and a model that cannot compute the feature where it is served.

The names live here too, so that training, serving and the Feast repo derive the same ones: the
features of view ``v`` form the Feast on-demand feature view ``v_request``, and each is the
column ``v_request__<name>`` in training sets and served rows, as every feature is
``<table>__<feature>``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from difflib import get_close_matches

from configs.schema.issues import short_list
from configs.schema.request_expressions import (
    TRANSFORMS,
    Kind,
    RequestExpression,
    parse_expression,
)
from configs.schema.usecase import UseCaseSpec
from runtime.layout import LAST_EVENT_AT, SECONDS_SINCE_LAST, attributes_view, feature_column

Problem = tuple[tuple[str | int, ...], str]
REQUEST_SUFFIX = "_request"
# the problem types whose served endpoint (/score) computes request features: the binary
# scorer first (the endpoint's original form), then the forms it also serves
SERVED_PROBLEMS = ("binary_classification", "multiclass_classification", "regression")
_KINDS: dict[str, Kind] = {
    "int": "number",
    "float": "number",
    "bool": "number",
    "string": "string",
    "timestamp": "timestamp",
}


def request_table(view: str) -> str:
    """The Feast on-demand feature view holding the request features of spec view ``view``."""
    return f"{view}{REQUEST_SUFFIX}"


@dataclass(frozen=True)
class RequestFeature:
    """One request-time feature of a spec view, parsed."""

    view: str
    name: str
    expression: RequestExpression

    @property
    def table(self) -> str:
        return request_table(self.view)

    @property
    def column(self) -> str:
        """Its column in training sets and served rows: ``<view>_request__<name>``."""
        return feature_column(self.table, self.name)


def request_features(spec: UseCaseSpec, views: Iterable[str] | None = None) -> list[RequestFeature]:
    """The request features of ``views`` (default: every view), in YAML order."""
    wanted = set(spec.features) if views is None else set(views)
    return [
        RequestFeature(view, name, parse_expression(text))
        for view, spec_view in spec.features.items()
        if view in wanted
        for name, text in spec_view.request.items()
    ]


@dataclass(frozen=True)
class Column:
    """A column an expression may name: its kind, or why it cannot be read (``refused``)."""

    kind: Kind | None
    table: str | None = None  # the feature table of a joined feature; None for an events column
    view: str | None = None  # the spec view that makes that table
    refused: str = ""


def _stored_columns(spec: UseCaseSpec) -> dict[str, Column]:
    """Every joined feature ``<table>__<feature>`` of the use case: its kind, by the rules of
    ``assets.features.views`` (tables named as there: the view, and ``<view>_attributes``)."""
    columns: dict[str, Column] = {}
    for name, view in spec.features.items():
        for aggregate in view.aggregates:
            for feature in aggregate.feature_names():
                column = feature_column(name, feature)
                if aggregate.agg == "time_since_last":
                    window = feature.removeprefix(LAST_EVENT_AT)
                    seconds = feature_column(name, f"{SECONDS_SINCE_LAST}{window}")
                    refused = (
                        "a time_since_last aggregate is stored as a time and becomes seconds"
                        " only where it is read; Feast's on-demand views cannot see those"
                    )
                    columns[column] = Column(None, name, name, refused)
                    columns[seconds] = Column(None, name, name, refused)
                elif aggregate.agg == "last_n":
                    refused = "a last_n aggregate is a list of ids"
                    columns[column] = Column(None, name, name, refused)
                else:
                    columns[column] = Column("number", name, name)
        for ratio in view.ratios:
            columns[feature_column(name, ratio.name)] = Column("number", name, name)
        owners: dict[str, list[str]] = {}
        entities = {e: spec.entities[e] for e in view.entities if e in spec.entities}
        for attribute in view.attributes:
            owner = next((e for e, entity in entities.items() if attribute in entity.columns), None)
            if owner is not None:  # else a problem consistency reports
                owners.setdefault(owner, []).append(attribute)
        for entity, attributes in owners.items():
            table = attributes_view(name if len(owners) == 1 else f"{name}_{entity}")
            for attribute in attributes:
                kind = _KINDS[entities[entity].columns[attribute].dtype]
                columns[feature_column(table, attribute)] = Column(kind, table, name)
    return columns


def _events_columns(spec: UseCaseSpec) -> dict[str, Column]:
    """Events columns (the request's fields), outcomes refused: at request time they are the
    answer, or when it arrived."""
    outcomes: dict[str, str] = {}
    for name, label in spec.labels.items():
        for column in (label.column, *label.outcomes):
            outcomes.setdefault(column, f"it is an outcome of labels.{name}")
        if label.available_at:
            outcomes.setdefault(label.available_at, f"it is when labels.{name} becomes known")
    return {
        name: Column(
            _KINDS[column.dtype],
            refused=f"{outcomes[name]}: not known when the event happens (label leakage)"
            if name in outcomes
            else "",
        )
        for name, column in spec.events.columns.items()
    }


def readable_columns(spec: UseCaseSpec) -> dict[str, Column]:
    """Every column a request feature may name (or is refused), events columns first."""
    return {**_events_columns(spec), **_stored_columns(spec)}


def output_kind(feature: RequestFeature, columns: dict[str, Column]) -> Kind:
    """What a (valid) request feature holds: a string for a passthrough of a string column,
    else a number."""
    if feature.expression.transform is None:
        column = columns.get(feature.expression.columns[0])
        if column is not None and column.kind == "string":
            return "string"
    return "number"


def event_inputs(spec: UseCaseSpec, features: Iterable[RequestFeature]) -> list[str]:
    """The events columns (request fields) ``features`` read, in first-use order."""
    names = [c for f in features for c in f.expression.columns if c in spec.events.columns]
    return list(dict.fromkeys(names))


def stored_inputs(spec: UseCaseSpec, features: Iterable[RequestFeature]) -> list[str]:
    """The joined features ``features`` read, in first-use order."""
    names = [c for f in features for c in f.expression.columns if c not in spec.events.columns]
    return list(dict.fromkeys(names))


def _unknown(name: str, known: list[str]) -> str:
    guess = get_close_matches(name, known, n=1)
    hint = f"; did you mean {guess[0]!r}?" if guess else ""
    return (
        f"column {name!r} is neither an events column nor a joined feature{hint} (events"
        f" columns and features: {short_list(known)})"
    )


def _feature_problems(feature: RequestFeature, columns: dict[str, Column]) -> Iterator[str]:
    expression = feature.expression
    transform = TRANSFORMS.get(expression.transform or "")
    kinds: list[Kind] = []
    for position, name in enumerate(expression.columns):
        column = columns.get(name)
        if column is None:
            yield _unknown(name, [c for c, info in columns.items() if not info.refused])
            return
        if column.refused:
            yield f"{expression.shown} cannot read {name!r}: {column.refused}"
            return
        assert column.kind is not None
        kinds.append(column.kind)
        wanted = transform.inputs[position] if transform else None
        if wanted not in (None, "any") and column.kind != wanted:
            yield (
                f"{expression.shown}({', '.join(expression.columns)}) takes a {wanted} column;"
                f" {name!r} is a {column.kind}"
            )
    if transform is None:
        name, column = expression.columns[0], columns[expression.columns[0]]
        if column.table is not None:
            yield f"{name!r} is already a feature: a passthrough takes an events column"
        elif column.kind == "timestamp":
            yield (
                f"{name!r} is a time, which no model reads as it is: use hour_of_day({name}),"
                f" day_of_week({name}), is_weekend({name}) or is_night({name})"
            )
    elif transform.same_kind and len(set(kinds)) > 1:
        yield (
            f"{transform.name} compares columns of one kind; {expression.columns[0]!r} is a"
            f" {kinds[0]} and {expression.columns[1]!r} a {kinds[1]}"
        )
    elif transform.same_kind and "timestamp" in kinds:
        yield f"{transform.name} compares numbers or strings, not times"


def _model_problems(spec: UseCaseSpec, columns: dict[str, Column]) -> Iterator[Problem]:
    """A model reading request features is served by /score, and includes the views they read."""
    for model_name, model in spec.model.items():
        views = [v for v in spec.features if not model.features or v in model.features]
        for feature in request_features(spec, views):
            at = ("features", feature.view, "request", feature.name)
            if model.problem not in SERVED_PROBLEMS:
                yield (
                    at,
                    f"model {model_name!r} ({model.problem}) reads view {feature.view!r}, and"
                    f" request features are computed at serving by /score ({SERVED_PROBLEMS[0]})"
                    f" only, and its {' and '.join(SERVED_PROBLEMS[1:])} forms:"
                    f" leave {feature.view!r} out of model.{model_name}.features",
                )
                break
            for name in feature.expression.columns:
                owner = columns[name].view if name in columns else None
                if owner is not None and owner not in views:
                    yield (
                        at,
                        f"model {model_name!r} reads this feature but not view {owner!r}, whose"
                        f" {name!r} it takes: add {owner!r} to model.{model_name}.features",
                    )


def check_request_features(spec: UseCaseSpec) -> list[Problem]:
    """Every problem of the spec's request features, each at its YAML field."""
    columns = readable_columns(spec)
    problems: list[Problem] = []
    tables = {c.table for c in columns.values() if c.table}
    for view_name, view in spec.features.items():
        if view.request and request_table(view_name) in tables:
            problems.append(
                (
                    ("features", view_name, "request"),
                    f"its on-demand view {request_table(view_name)!r} has the name of a feature"
                    " table; rename the view",
                )
            )
    for feature in request_features(spec):
        at = ("features", feature.view, "request", feature.name)
        problems.extend((at, message) for message in _feature_problems(feature, columns))
    if not problems:
        problems.extend(_model_problems(spec, columns))
    return problems
