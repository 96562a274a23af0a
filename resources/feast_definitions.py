"""The plain definitions of a Feast repo, and the Feast objects they stand for.

The assets stage describes a use case's feature repo with these frozen dataclasses (no Feast or
YAML types), and :func:`feast_objects` turns them into the entities, file sources, feature views,
on-demand feature views (request-time features, with a request source for the event row's fields)
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
from feast import (
    Entity,
    FeatureService,
    FeatureView,
    Field,
    FileSource,
    OnDemandFeatureView,
    RequestSource,
    ValueType,
)
from feast.types import Array, Bool, FeastType, Float64, Int64, String, UnixTimestamp

from runtime.request_features import feast_udf

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
# A request field's type, by its events column's dtype.
REQUEST_TYPES: dict[str, FeastType] = {
    "float": Float64,
    "int": Int64,
    "string": String,
    "bool": Bool,
    "timestamp": UnixTimestamp,
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
class OnDemandViewDef:
    """An on-demand feature view: request-time features computed when they are read.

    ``features`` are ``(name, expression, dtype)``, the expression in the YAML's language
    (:mod:`configs.schema.request_expressions`), computed by :mod:`runtime.request_features`;
    ``request_fields`` the event row's fields it reads, ``(column, events dtype)``, which a
    ``RequestSource`` named ``<name>_source`` asks of the caller; ``sources`` the feature views
    whose features it reads.
    """

    name: str
    features: tuple[tuple[str, str, str], ...]
    request_fields: tuple[tuple[str, str], ...]
    sources: tuple[str, ...] = ()
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def expressions(self) -> dict[str, str]:
        return {name: expression for name, expression, _ in self.features}


@dataclass(frozen=True)
class FeatureRepoDef:
    """Everything one use case registers: its views and the feature service of each model.

    On-demand views stand on their own, in no feature service: a model's service lists the
    views the online store holds, and ``/score`` computes the request features itself.
    """

    project: str
    views: tuple[FeatureViewDef, ...]
    services: Mapping[str, tuple[str, ...]]
    origin: str = ""  # the file these come from (the use case's YAML), named in the repo's .py
    on_demand: tuple[OnDemandViewDef, ...] = ()


def feast_objects(repo: FeatureRepoDef) -> list[Any]:
    """Entities, sources, feature views, on-demand views and feature services for ``repo``."""
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
    sources: list[Any] = [_file_source(view) for view in repo.views]
    on_demand = []
    for odfv in repo.on_demand:
        unknown = [name for name in odfv.sources if name not in views]
        if unknown:
            raise ValueError(f"on-demand view {odfv.name!r} reads unknown views {unknown}")
        request = _request_source(odfv)
        sources.append(request)
        on_demand.append(_on_demand_view(odfv, [views[n] for n in odfv.sources], request))
    return [*entities.values(), *sources, *views.values(), *on_demand, *services]


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


def _request_source(odfv: OnDemandViewDef) -> RequestSource:
    return RequestSource(
        name=f"{odfv.name}_source",
        schema=[Field(name=c, dtype=REQUEST_TYPES[d]) for c, d in odfv.request_fields],
    )


def _on_demand_view(
    odfv: OnDemandViewDef, views: list[FeatureView], request: RequestSource
) -> OnDemandFeatureView:
    udf = feast_udf(odfv.name, odfv.expressions)
    return OnDemandFeatureView(
        name=odfv.name,
        sources=[*views, request],
        schema=[Field(name=name, dtype=FEATURE_TYPES[d]) for name, _, d in odfv.features],
        mode="pandas",
        udf=udf,
        udf_string=udf.source,  # type: ignore[attr-defined]
        description=odfv.description,
        tags=dict(odfv.tags),
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
