"""Cross-section checks of ``model.<m>.evaluation`` and of ``card_precision`` in ``metrics``.

An evaluation option names things declared elsewhere (an entity for the unit, a label for the
filter) and only fits some problems (a classifier has no candidate list to remove seen items
from), so each is checked against the rest of the spec here and reported at its own field,
before anything runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from difflib import get_close_matches

from configs.schema.issues import short_list
from configs.schema.model_stage import RANKERS, RETRIEVERS, TABULAR
from configs.schema.usecase import UseCaseSpec

Problem = tuple[tuple[str | int, ...], str]


def _unknown(name: str, known: list[str], what: str) -> str:
    guess = get_close_matches(name, known, n=1)
    hint = f"; did you mean {guess[0]!r}?" if guess else ""
    return f"{what} {name!r} is not declared{hint} (declared: {short_list(known)})"


def prior_label(spec: UseCaseSpec, name: str) -> str | None:
    """The label a filter names, by its name or by its column; None when neither matches."""
    if name in spec.labels:
        return name
    return next((n for n, label in spec.labels.items() if label.column == name), None)


def _event_keys(spec: UseCaseSpec) -> list[tuple[str, str]]:
    return [(n, e.key) for n, e in spec.entities.items() if e.key in spec.events.columns]


def _item_key(spec: UseCaseSpec, model: str) -> str | None:
    """The ranked entity's key: the sampled one, else the last events entity key."""
    negatives = spec.model[model].negatives
    if negatives is not None and negatives.entity in spec.entities:
        return spec.entities[negatives.entity].key
    keys = _event_keys(spec)
    return keys[-1][1] if keys else None


def _unit_key(spec: UseCaseSpec, model: str) -> str | None:
    chosen = spec.model[model].evaluation.unit
    if chosen is not None:
        return spec.entities[chosen].key if chosen in spec.entities else None
    keys = _event_keys(spec)
    return keys[0][1] if keys else None


def _check_unit(spec: UseCaseSpec, model: str) -> Iterator[Problem]:
    stage = spec.model[model]
    chosen = stage.evaluation.unit
    if chosen is None:
        return
    at = ("model", model, "evaluation", "unit")
    entity = spec.entities.get(chosen)
    if entity is None:
        yield at, _unknown(chosen, list(spec.entities), "entity")
    elif entity.key not in spec.events.columns:
        yield at, f"key {entity.key!r} of entity {chosen!r} is not an events column"
    elif stage.problem in RETRIEVERS and entity.key == _item_key(spec, model):
        yield at, f"{chosen!r} is the retrieved item; the unit is who it is retrieved for"


def _check_exclude_seen(spec: UseCaseSpec, model: str) -> Iterator[Problem]:
    stage = spec.model[model]
    seen = stage.evaluation.exclude_seen
    at = ("model", model, "evaluation", "exclude_seen")
    if seen is None:
        return
    if stage.problem == "binary_classification":
        yield (
            at,
            "applies to two_tower, learning_to_rank and multi_task: a classifier scores each"
            " row and has no candidate list to remove seen items from",
        )
    elif stage.problem in RANKERS and seen != "none":
        unit, item = _unit_key(spec, model), _item_key(spec, model)
        if item is None or item == unit:
            yield (
                at,
                f"needs an item entity besides the unit ({unit!r}) among the events keys, to"
                " know which (unit, item) pairs were seen; use none",
            )


def _check_filter(spec: UseCaseSpec, model: str) -> Iterator[Problem]:
    stage = spec.model[model]
    name = stage.evaluation.filter.drop_units_with_prior_label
    if name is None:
        return
    at = ("model", model, "evaluation", "filter", "drop_units_with_prior_label")
    label = prior_label(spec, name)
    if label is None:
        yield at, _unknown(name, list(spec.labels), "label")
    elif spec.labels[label].kind != "binary":
        yield at, f"label {label!r} is {spec.labels[label].kind}; a prior positive needs binary"
    if spec.events.timestamp is None:
        yield at, "'prior' is counted on events.timestamp, and these events have no time"
    if stage.problem not in TABULAR:
        yield at, f"applies to {', '.join(TABULAR)}: {stage.problem} is evaluated per user"


def _check_card_precision(spec: UseCaseSpec) -> Iterator[Problem]:
    metrics = spec.metrics
    if metrics is None:
        return
    named = [(("metrics", "primary"), metrics.primary)]
    named += [(("metrics", "others", i), m) for i, m in enumerate(metrics.others)]
    for at, metric in named:
        if metric != "card_precision":
            continue
        if spec.events.timestamp is None:
            yield at, "card_precision is counted per day and needs events.timestamp"
        classifiers = [m for m, s in spec.model.items() if s.problem == "binary_classification"]
        if not classifiers:
            yield at, "card_precision applies to binary_classification models, and there is none"
        if at == ("metrics", "primary"):
            for model, stage in spec.model.items():
                if stage.problem != "binary_classification":
                    yield (
                        at,
                        f"the promotion gate of model {model!r} ({stage.problem}) cannot compare"
                        " card_precision, a binary_classification metric; make it one of others",
                    )


def check_evaluation(spec: UseCaseSpec) -> Iterator[Problem]:
    """Every problem of the models' ``evaluation`` sections and of ``card_precision``."""
    for model in spec.model:
        yield from _check_unit(spec, model)
        yield from _check_exclude_seen(spec, model)
        yield from _check_filter(spec, model)
    yield from _check_card_precision(spec)
