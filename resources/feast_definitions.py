"""The plain definitions of a Feast repo, and the Feast objects they stand for.

The assets stage describes a use case's feature repo with these frozen dataclasses (no Feast or
YAML types), and :func:`feast_objects` turns them into the entities, file sources, feature views
and feature services that :class:`resources.feature_store.FeatureStoreResource` applies. They live
apart from the resource so that what a repo *is* can be read, built and tested without the
resource that registers, materializes and serves it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import pyarrow.compute as pc
import pyarrow.parquet as pq
from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Array, FeastType, Float64, Int64, String, UnixTimestamp

EntityDtype = Literal["int", "string"]
FeatureDtype = Literal["float", "int", "string", "timestamp", "int_list", "string_list"]

EVENT_TIMESTAMP = "event_timestamp"
CREATED_TIMESTAMP = "created_timestamp"

ENTITY_TYPES: dict[str, tuple[ValueType, FeastType]] = {
    "int": (ValueType.INT64, Int64),
    "string": (ValueType.STRING, String),
}
FEATURE_TYPES: dict[str, FeastType] = {
    "float": Float64,
    "int": Int64,
    "string": String,
    "timestamp": UnixTimestamp,
    "int_list": Array(Int64),
    "string_list": Array(String),
}


@dataclass(frozen=True)
class EntityDef:
    """An entity and its join key, e.g. ``user`` joined on ``user_id``."""

    name: str
    join_key: str
    dtype: EntityDtype


@dataclass(frozen=True)
class FeatureViewDef:
    """A feature view: its entities, typed feature columns and the Parquet file that holds them.

    The file has the join keys, ``event_timestamp``, ``created_timestamp`` (ties on the event time
    are broken by the later creation) and the feature columns.
    """

    name: str
    entities: tuple[EntityDef, ...]
    features: tuple[tuple[str, str], ...]
    source_path: str
    ttl: timedelta
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FeatureRepoDef:
    """Everything one use case registers: its views and the feature service of each model."""

    project: str
    views: tuple[FeatureViewDef, ...]
    services: Mapping[str, tuple[str, ...]]
    origin: str = ""  # the file these come from (the use case's YAML), named in the repo's .py


def feast_objects(repo: FeatureRepoDef) -> list[Any]:
    """Entities, file sources, feature views and feature services for ``repo``."""
    entities: dict[str, Entity] = {}
    views: dict[str, FeatureView] = {}
    for view in repo.views:
        for entity in view.entities:
            entities.setdefault(entity.name, _entity(entity))
        views[view.name] = _feature_view(view, [entities[e.name] for e in view.entities])
    services = []
    for service, view_names in repo.services.items():
        unknown = [name for name in view_names if name not in views]
        if unknown:
            raise ValueError(f"feature service {service!r} names unknown views {unknown}")
        services.append(FeatureService(name=service, features=[views[n] for n in view_names]))
    # Each view keeps a source object of its own, equal to the one listed: Feast's apply restamps
    # the sources it applies, and the view's copy keeps the times that
    # :func:`resources.feast_apply.keep_source_times` sets.
    sources = [_file_source(view) for view in repo.views]
    return [*entities.values(), *sources, *views.values(), *services]


def _entity(entity: EntityDef) -> Entity:
    value_type, _ = ENTITY_TYPES[entity.dtype]
    return Entity(name=entity.name, join_keys=[entity.join_key], value_type=value_type)


def _file_source(view: FeatureViewDef) -> FileSource:
    return FileSource(
        name=f"{view.name}_source",
        path=str(view.source_path),
        timestamp_field=EVENT_TIMESTAMP,
        created_timestamp_column=CREATED_TIMESTAMP,
    )


def _feature_view(view: FeatureViewDef, entities: list[Entity]) -> FeatureView:
    # Join keys are declared in the schema too: Feast types entity values from these fields.
    schema = [Field(name=e.join_key, dtype=ENTITY_TYPES[e.dtype][1]) for e in view.entities]
    schema += [Field(name=name, dtype=FEATURE_TYPES[dtype]) for name, dtype in view.features]
    return FeatureView(
        name=view.name,
        entities=entities,
        ttl=view.ttl,
        schema=schema,
        source=_file_source(view),
        online=True,
        description=view.description,
        tags=dict(view.tags),
    )


def entities_in_window(view: FeatureViewDef, start: datetime, end: datetime) -> int:
    """How many entities have a row in ``[start, end]``: the rows one materialization writes."""
    keys = [entity.join_key for entity in view.entities]
    table = pq.read_table(view.source_path, columns=[*keys, EVENT_TIMESTAMP])
    times = table[EVENT_TIMESTAMP]
    if times.type.tz is None:
        times = pc.assume_timezone(times, "UTC")
    mask = pc.and_(pc.greater_equal(times, start), pc.less_equal(times, end))
    return table.filter(mask).select(keys).group_by(keys).aggregate([]).num_rows
