"""What a model's problem and the file source need from the rest of the YAML.

Each of these used to pass ``playbook validate`` and stop a run much later: a two-tower model in
a use case with one entity failed at training, an entity table with no file at its raw asset.
Checked here from the spec alone (no file is opened), so validate reports them with their line.
"""

from __future__ import annotations

from collections.abc import Iterator

from configs.schema.issues import Loc, short_list
from configs.schema.multiclass_checks import multiclass_problems
from configs.schema.source import FileSource
from configs.schema.usecase import UseCaseSpec
from runtime.layout import feature_column

Problem = tuple[Loc, str]


def _in_events(spec: UseCaseSpec) -> list[str]:
    """Entities whose key is an events column, in YAML order."""
    return [name for name, entity in spec.entities.items() if entity.key in spec.events.columns]


def _two_tower(spec: UseCaseSpec, model: str) -> Iterator[Problem]:
    """A user (or query) tower and an item (or document) tower, each keyed by an events column.

    The item side is the sampled entity of ``negatives``, else the last entity in the events (as
    training picks them, ``runtime.funnel_roles``); the user side is any other one.
    """
    stage = spec.model[model]
    in_events = _in_events(spec)
    if stage.negatives is not None:
        item: str | None = stage.negatives.entity
    else:
        item = in_events[-1] if in_events else None
    users = [name for name in in_events if name != item]
    if item is None or not users:
        yield (
            ("model", model, "problem"),
            "two_tower needs a user and an item entity, both keyed by events columns"
            f" (entities with their key in events.columns: {short_list(in_events)});"
            " declare the missing one under entities and its key under events.columns",
        )


def history_feature(spec: UseCaseSpec, model: str) -> tuple[str, int] | None:
    """(column, n) of the recent-items list a ``sequence`` model reads: a ``last_n`` aggregate of
    the item key in one of the model's views keyed by the user entity alone, the longest first.

    The column is the training sets' and online reads' name (``<view>__<item>_last<n>_<w>``);
    the same list is read from Feast at request time, so training and serving see one history.
    """
    in_events = _in_events(spec)
    if len(in_events) < 2:
        return None
    stage = spec.model[model]
    item = stage.negatives.entity if stage.negatives is not None else in_events[-1]
    users = [name for name in in_events if name != item]
    if item not in spec.entities or not users:
        return None
    item_key = spec.entities[item].key
    found: list[tuple[str, int]] = []
    for view, feature_view in spec.features.items():
        if (stage.features and view not in stage.features) or feature_view.entities != users[:1]:
            continue
        for aggregate in feature_view.aggregates:
            if aggregate.agg == "last_n" and aggregate.column == item_key:
                names = aggregate.feature_names()
                found += [(feature_column(view, name), aggregate.n or 0) for name in names]
    return max(found, key=lambda c: c[1]) if found else None


def _sequence(spec: UseCaseSpec, model: str) -> Iterator[Problem]:
    """A user and an item entity, event time, and the user's recent items as an online feature."""
    stage = spec.model[model]
    yield from (
        (at, message.replace("two_tower", "sequence")) for at, message in _two_tower(spec, model)
    )
    if spec.events.timestamp is None:
        yield (
            ("model", model, "problem"),
            "sequence reads the items a user had before each event: set events.timestamp",
        )
    in_events = _in_events(spec)
    if len(in_events) < 2:
        return
    history = history_feature(spec, model)
    max_len = stage.sequence.max_len if stage.sequence is not None else 20
    if history is None:
        item = stage.negatives.entity if stage.negatives is not None else in_events[-1]
        user = next(name for name in in_events if name != item)
        yield (
            ("model", model, "problem"),
            f"sequence reads the user's recent {item} ids from the feature store: add"
            f" {{column: {spec.entities[item].key}, agg: last_n, n: {max_len}, windows: [30d]}}"
            f" to the aggregates of a view with entities: [{user}] that the model uses",
        )
    elif history[1] < max_len:
        yield (
            ("model", model, "sequence", "max_len"),
            f"max_len {max_len} is longer than the recent-items feature {history[0]!r}"
            f" (last_n n: {history[1]}): lower max_len or raise n",
        )


def _learning_to_rank(spec: UseCaseSpec, model: str) -> Iterator[Problem]:
    if spec.events.group is None:
        yield (
            ("model", model, "problem"),
            "learning_to_rank ranks rows within a group: set events.group (the query or request"
            " column)",
        )


def _multi_task(spec: UseCaseSpec, model: str) -> Iterator[Problem]:
    stage = spec.model[model]
    if len(stage.labels) != 2:
        yield (
            ("model", model, "labels"),
            f"multi_task needs two labels, click then purchase (got {len(stage.labels)})",
        )
    if stage.value_feature is None:
        yield (
            ("model", model, "problem"),
            "multi_task needs value_feature (the feature multiplied into the expected value)",
        )


def _binary_label(spec: UseCaseSpec, model: str) -> Iterator[Problem]:
    stage = spec.model[model]
    label = spec.labels.get(stage.labels[0])
    if label is not None and label.kind != "binary":
        yield (
            ("model", model, "labels", 0),
            f"binary_classification needs a binary label; {stage.labels[0]!r} is {label.kind}",
        )


def _regression(spec: UseCaseSpec, model: str) -> Iterator[Problem]:
    """A continuous label in a numeric events column, and a regression metric to gate on."""
    name = spec.model[model].labels[0]
    label = spec.labels.get(name)
    if label is not None and label.kind != "continuous":
        yield (
            ("model", model, "labels", 0),
            f"regression needs a continuous label; {name!r} is {label.kind}: set"
            f" labels.{name}.kind: continuous (a numeric target such as a price or a duration)",
        )
    column = spec.events.columns.get(label.column) if label is not None else None
    if column is not None and column.dtype not in ("int", "float"):
        yield (
            ("labels", name, "column"),
            f"regression needs a numeric label column; {label.column!r} is {column.dtype}",
        )
    if spec.metrics is not None and spec.metrics.primary not in ("rmse", "mae", "mape"):
        yield (
            ("metrics", "primary"),
            f"regression is gated on rmse, mae or mape, not {spec.metrics.primary!r}",
        )
    named = (spec.metrics.primary, *spec.metrics.others) if spec.metrics is not None else ()
    regression = spec.model[model].regression
    if "interval_coverage" in named and (regression is None or regression.interval is None):
        yield (
            ("model", model, "problem"),
            "interval_coverage needs a prediction interval: set regression: {interval: [0.1,"
            " 0.9]} (the lower and upper quantiles)",
        )


_BY_PROBLEM = {
    "multiclass_classification": multiclass_problems,
    "two_tower": _two_tower,
    "sequence": _sequence,
    "learning_to_rank": _learning_to_rank,
    "multi_task": _multi_task,
    "binary_classification": _binary_label,
    "regression": _regression,
}


def _entity_files(spec: UseCaseSpec) -> Iterator[Problem]:
    """Every entity table of a file source has a file: its raw asset reads nothing else."""
    source = spec.source
    if not isinstance(source, FileSource):
        return
    for name, entity in spec.entities.items():
        if entity.table and entity.table not in source.tables:
            yield (
                ("entities", name, "table"),
                f"entity table {entity.table!r} has no file: add source.tables.{entity.table}"
                f" (path, columns), or remove table and columns from entities.{name}",
            )


def requirement_problems(spec: UseCaseSpec) -> list[Problem]:
    """What each model's problem type and the file source need and the spec does not have."""
    problems = list(_entity_files(spec))
    for model, stage in spec.model.items():
        problems.extend(_BY_PROBLEM[stage.problem](spec, model))
    return problems
