"""What a model's problem and the file source need from the rest of the YAML.

Each of these used to pass ``playbook validate`` and stop a run much later: a two-tower model in
a use case with one entity failed at training, an entity table with no file at its raw asset.
Checked here from the spec alone (no file is opened), so validate reports them with their line.
"""

from __future__ import annotations

from collections.abc import Iterator

from configs.schema.issues import Loc, short_list
from configs.schema.source import FileSource
from configs.schema.usecase import UseCaseSpec

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


_BY_PROBLEM = {
    "two_tower": _two_tower,
    "learning_to_rank": _learning_to_rank,
    "multi_task": _multi_task,
    "binary_classification": _binary_label,
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
