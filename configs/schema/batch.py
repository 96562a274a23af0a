"""Batch serving (``serving.mode: batch``): which model scores which entity, and what it needs.

A batch run scores every entity from its stored features alone, so the model must read nothing a
request would bring: every feature view it uses is keyed by that one entity, none is computed at
request time, none passes an events column through. The checks are in the shape of
:func:`configs.schema.consistency.cross_check`'s, ``(field path, message)``, so the loader can
point at the YAML line; the resolvers give the model and entity the batch assets score.
"""

from __future__ import annotations

from collections.abc import Iterator

from configs.schema.issues import short_list
from configs.schema.model_stage import RANKERS, TABULAR
from configs.schema.usecase import UseCaseSpec

Loc = tuple[str | int, ...]
# one score per entity: rankers order a candidate list, retrievers search a catalog
BATCH_PROBLEMS: tuple[str, ...] = tuple(p for p in TABULAR if p not in RANKERS)


def is_batch(spec: UseCaseSpec) -> bool:
    """Whether the use case is served by scheduled batch scoring."""
    return spec.serving is not None and spec.serving.mode == "batch"


def batch_model(spec: UseCaseSpec) -> str | None:
    """The model a batch run scores with: ``serving.model``, else the only model."""
    if spec.serving is not None and spec.serving.model is not None:
        return spec.serving.model
    return next(iter(spec.model)) if len(spec.model) == 1 else None


def model_views(spec: UseCaseSpec, model: str) -> list[str]:
    """The feature views a model reads: its ``features`` list, or every view when empty."""
    wanted = spec.model[model].features
    return [name for name in spec.features if not wanted or name in wanted]


def batch_entity(spec: UseCaseSpec) -> str | None:
    """The entity a batch run scores: ``serving.entity``, else the one entity keying every view
    of the model (None when there is no such single entity)."""
    if spec.serving is not None and spec.serving.entity is not None:
        return spec.serving.entity
    model = batch_model(spec)
    if model is None or model not in spec.model:
        return None
    keyed = {tuple(spec.features[v].entities) for v in model_views(spec, model)}
    return keyed.pop()[0] if len(keyed) == 1 and len(next(iter(keyed), ())) == 1 else None


def batch_problems(spec: UseCaseSpec) -> Iterator[tuple[Loc, str]]:
    """What batch serving needs from the rest of the spec (nothing when the mode is online)."""
    if not is_batch(spec):
        return
    if spec.slo is not None:
        yield ("slo",), "an slo is measured on an online endpoint: batch serving has none"
    if spec.experiment is not None:
        yield (
            ("experiment",),
            "experiment arms split requests: batch serving scores with the champion",
        )
    model = batch_model(spec)
    if model is None:
        yield (
            ("serving", "mode"),
            f"batch serving scores with one model: name it in serving.model"
            f" (models: {short_list(list(spec.model)) or 'none'})",
        )
        return
    if model not in spec.model:
        yield (
            ("serving", "model"),
            f"model {model!r} is not declared ({short_list(list(spec.model))})",
        )
        return
    problem = spec.model[model].problem
    if problem not in BATCH_PROBLEMS:
        yield (
            ("model", model, "problem"),
            f"batch serving scores one value per entity: {problem} is not one of"
            f" {', '.join(BATCH_PROBLEMS)}",
        )
    entity = batch_entity(spec)
    if entity is None:
        yield (
            ("serving", "mode"),
            f"batch serving scores one entity: name it in serving.entity (the views of {model}"
            " are not all keyed by one entity)",
        )
        return
    if entity not in spec.entities:
        yield (
            ("serving", "entity"),
            f"entity {entity!r} is not declared ({short_list(list(spec.entities))})",
        )
        return
    views = model_views(spec, model)
    if not views:
        yield (
            ("model", model, "features"),
            "batch scoring reads stored features: the model has none",
        )
    for view in views:
        section = spec.features[view]
        if section.entities != [entity]:
            yield (
                ("features", view, "entities"),
                f"batch scoring reads each {entity}'s stored features: view {view!r} is keyed"
                f" by {section.entities or 'nothing'}, not [{entity}]",
            )
        if section.request:
            yield (
                ("features", view, "request"),
                "request-time features need an event to score; a batch run has none",
            )
        if section.passthrough:
            yield (
                ("features", view, "passthrough"),
                "events columns passed through need an event to score; a batch run has none",
            )
