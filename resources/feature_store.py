"""The Feast feature store behind every use case: one Feast repo folder per project.

The assets stage turns a use case's ``features`` section into a :class:`FeatureRepoDef` (plain
dataclasses, no Feast or YAML types) and hands it to :class:`FeatureStoreResource`, which owns
everything Feast: the ``feature_store.yaml``, the registry, applying definitions (and removing the
ones the YAML no longer has) and writing them as the repo's Feast Python file, so that ``feast
plan`` and ``feast apply`` in the folder find nothing to change (:mod:`resources.feast_repo_files`),
materializing to the online store, point-in-time training reads through the DuckDB offline store,
and online reads.

Feast stays the source of truth. Online reads have two paths over the same store:

* :meth:`FeatureStoreResource.online_features` is the serving path. Feast's SDK spends about
  0.1 ms of Python per entity row building and unpacking protobuf responses, several times the
  cost of the read itself; the fast path (``runtime.online_read``) calls the configured Feast
  ``OnlineStore.online_read`` directly with a plan resolved once per service, so it returns the
  same values several times faster.
* views named in ``cached_views`` (``["*"]``: all) are served by that path from an in-process
  cache loaded through the same Feast call and reloaded after each materialization: for small,
  slowly changing views, it removes the store read from the request.
* :meth:`FeatureStoreResource.sdk_online_features` is Feast's own ``get_online_features`` and is
  kept for comparison (tests assert both return identical frames).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import dagster as dg
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml
from feast import Entity, FeatureService, FeatureStore, FeatureView, Field, FileSource, ValueType
from feast.diff.property_diff import TransitionType
from feast.types import Array, FeastType, Float64, Int64, String, UnixTimestamp
from pydantic import PrivateAttr

from resources.feast_repo_files import (
    SourceTimes,
    check_round_trip,
    definitions_path,
    load_definitions,
    render_definitions,
    repo_contents,
    write_text_atomic,
)
from resources.home import home_layout
from runtime.online_read import OnlineReader, column_order

logger = logging.getLogger(__name__)

EntityDtype = Literal["int", "string"]
FeatureDtype = Literal["float", "int", "string", "timestamp", "int_list", "string_list"]

EVENT_TIMESTAMP = "event_timestamp"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
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
    # the sources it applies, and the view's copy keeps the times :func:`_keep_source_times` set.
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


def _utc(moment: datetime) -> datetime:
    """A tz-aware UTC datetime (naive ones are taken as UTC, as Feast does)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def entities_in_window(view: FeatureViewDef, start: datetime, end: datetime) -> int:
    """How many entities have a row in ``[start, end]``: the rows one materialization writes."""
    keys = [entity.join_key for entity in view.entities]
    table = pq.read_table(view.source_path, columns=[*keys, EVENT_TIMESTAMP])
    times = table[EVENT_TIMESTAMP]
    if times.type.tz is None:
        times = pc.assume_timezone(times, "UTC")
    mask = pc.and_(pc.greater_equal(times, start), pc.less_equal(times, end))
    return table.filter(mask).select(keys).group_by(keys).aggregate([]).num_rows


class FeatureStoreResource(dg.ConfigurableResource):
    """Feast feature repos under ``root`` (default ``<home>/feast``), one folder per project.

    ``online_store`` picks SQLite (``<repo>/online.db``, no server) or Redis at
    ``redis_connection``; the offline store is always DuckDB over the views' Parquet files.
    """

    root: str | None = None
    online_store: Literal["sqlite", "redis"] = "sqlite"
    redis_connection: str = "127.0.0.1:6379"
    # Views whose online features are served from an in-process cache ("*": all); see
    # runtime.online_cache.ViewCache. Costs memory: every online entity of the view.
    cached_views: list[str] = []

    _stores: dict[str, FeatureStore] = PrivateAttr(default_factory=dict)
    _readers: dict[str, OnlineReader] = PrivateAttr(default_factory=dict)

    def repo_path(self, project: str) -> Path:
        """The Feast repo folder of ``project`` (created)."""
        base = Path(self.root) if self.root else Path(str(home_layout().feast()))
        path = base.expanduser().resolve() / project
        path.mkdir(parents=True, exist_ok=True)
        return path

    def write_config(self, repo: FeatureRepoDef) -> Path:
        """Write ``<repo>/feature_store.yaml`` and return its path.

        Absolute paths throughout, so the store opens the same from any working directory.
        """
        path = self.repo_path(repo.project)
        if self.online_store == "redis":
            online: dict[str, Any] = {
                "type": "redis",
                "connection_string": self.redis_connection,
            }
        else:
            online = {"type": "sqlite", "path": str(path / "online.db")}
        config = {
            "project": repo.project,
            "provider": "local",
            "registry": str(path / "registry.db"),
            "offline_store": {"type": "duckdb"},
            "online_store": online,
            "entity_key_serialization_version": 3,
        }
        target = path / "feature_store.yaml"
        if write_text_atomic(target, yaml.safe_dump(config, sort_keys=False)):
            self._forget(repo.project)
        return target

    def definitions_path(self, project: str) -> Path:
        """``<repo>/<project>_repo.py``: the Python definitions Feast's CLI reads."""
        return definitions_path(self.repo_path(project), project)

    def store(self, project: str) -> FeatureStore:
        """The Feast store of ``project`` (cached; call :meth:`write_config` first)."""
        cached = self._stores.get(project)
        if cached is None:
            path = self.repo_path(project)
            if not (path / "feature_store.yaml").exists():
                raise FileNotFoundError(
                    f"{path}/feature_store.yaml does not exist: apply the feature repo first"
                )
            cached = self._stores[project] = FeatureStore(repo_path=str(path))
        return cached

    def _forget(self, project: str) -> None:
        self._stores.pop(project, None)
        reader = self._readers.pop(project, None)
        if reader is not None:
            reader.close()

    def apply(self, repo: FeatureRepoDef) -> dict:
        """Register ``repo`` with Feast, drop registered objects it no longer defines, and write
        the same objects as the repo's Python definitions (:meth:`definitions_path`).

        Without the deletions a view removed from the YAML would stay in the registry (and its
        online table in the store) forever. Without the definitions file, Feast's own CLI in the
        repo folder would take it for an empty repo: ``feast apply`` would delete everything.
        The file is rendered from the objects applied and checked to rebuild them before anything
        is registered; after, Feast plans the file against the registry (it must find nothing to
        change), the registry records the online store's tables as ``feast apply`` would, and the
        file is written.
        """
        self.write_config(repo)
        store = self.store(repo.project)
        objects = feast_objects(repo)
        target = self.definitions_path(repo.project)
        check_round_trip(render_definitions(objects, repo.project), objects, str(target))
        stale = _stale_objects(store, objects)
        _keep_source_times(store, objects)
        store.apply(objects, objects_to_delete=stale, partial=False)
        definitions = render_definitions(
            objects, repo.project, _source_times(store), origin=repo.origin
        )
        _plan_nothing(store, definitions, str(target))
        write_text_atomic(target, definitions)
        return {
            "project": repo.project,
            "repo_path": str(self.repo_path(repo.project)),
            "definitions": str(target),
            "online_store": self.online_store,
            "entities": sorted(o.name for o in objects if isinstance(o, Entity)),
            "feature_views": sorted(o.name for o in objects if isinstance(o, FeatureView)),
            "feature_services": sorted(o.name for o in objects if isinstance(o, FeatureService)),
            "removed": sorted(f"{type(o).__name__}:{o.name}" for o in stale),
        }

    def materialize(
        self, repo: FeatureRepoDef, end: datetime, start: datetime | None = None
    ) -> dict:
        """Load the latest row per entity into the online store; returns a summary.

        With ``start`` it is ``FeatureStore.materialize(start, end)``. Without, it is incremental:
        a view continues from its last materialized end. A view never materialized starts at
        ``end - ttl``, not at Feast's ``now - ttl``, which would skip everything when ``end`` (the
        data) lies further back than the TTL, as it does for historical or synthetic data.
        """
        self.write_config(repo)  # the yaml follows this resource's online store settings
        store = self.store(repo.project)
        end = _utc(end)
        names = [view.name for view in repo.views]
        intervals: dict[str, tuple[datetime, datetime]] = {}
        if start is not None:
            store.materialize(_utc(start), end, feature_views=names)
            intervals = {name: (_utc(start), end) for name in names}
        else:
            intervals = self._materialize_incremental(store, repo, end)
        rows = {
            view.name: entities_in_window(view, *intervals[view.name])
            for view in repo.views
            if view.name in intervals
        }
        return {
            "project": repo.project,
            "feature_views": names,
            "intervals": {
                name: {"start": s.isoformat(), "end": e.isoformat()}
                for name, (s, e) in intervals.items()
            },
            "rows_written": rows,
            "rows_written_total": sum(rows.values()),
        }

    def _materialize_incremental(
        self, store: FeatureStore, repo: FeatureRepoDef, end: datetime
    ) -> dict[str, tuple[datetime, datetime]]:
        intervals: dict[str, tuple[datetime, datetime]] = {}
        resumed = []
        for view in repo.views:
            last = store.get_feature_view(view.name).most_recent_end_time
            if last is None:
                # a zero TTL never goes stale: load everything there is
                first = end - view.ttl if view.ttl else EPOCH
                store.materialize(first, end, feature_views=[view.name])
                intervals[view.name] = (first, end)
            elif _utc(last) < end:
                resumed.append(view.name)
                intervals[view.name] = (_utc(last), end)
        if resumed:
            store.materialize_incremental(end, feature_views=resumed)
        return intervals

    def historical_features(
        self, repo: FeatureRepoDef, entity_df: pd.DataFrame, service: str
    ) -> pd.DataFrame:
        """Point-in-time correct features of ``service`` for ``entity_df`` (join keys and
        ``event_timestamp``), through Feast's DuckDB offline store."""
        store = self.store(repo.project)
        job = store.get_historical_features(
            entity_df=entity_df,
            features=store.get_feature_service(service),
            full_feature_names=True,
        )
        return job.to_df()

    def online_features(
        self, repo: FeatureRepoDef, service: str, entity_rows: pd.DataFrame
    ) -> pd.DataFrame:
        """Online features of ``service`` for ``entity_rows``: its join keys first, then
        ``<view>__<feature>`` columns; the same frame as :meth:`sdk_online_features`, faster.

        Views in ``cached_views`` are answered from memory; the first read after a
        materialization reloads them. See ``runtime.online_read`` for why and how.
        """
        return self._reader(repo.project).read(service, entity_rows)

    def _reader(self, project: str) -> OnlineReader:
        reader = self._readers.get(project)
        if reader is None:
            reader = self._readers[project] = OnlineReader(
                self.store(project), cached_views=self.cached_views
            )
        return reader

    def sdk_online_features(
        self, repo: FeatureRepoDef, service: str, entity_rows: pd.DataFrame
    ) -> pd.DataFrame:
        """Feast's own ``get_online_features(...).to_df()``, the reference for the fast path.

        Columns are put in :meth:`online_features`' order: Feast groups a view's features in a
        ``set``, so its own order within a view changes with the string hash seed.
        """
        store = self.store(repo.project)
        response = store.get_online_features(
            features=store.get_feature_service(service, allow_cache=True),
            entity_rows=entity_rows.to_dict("list"),
            full_feature_names=True,
        )
        frame = response.to_df()
        return frame[column_order(frame, self._reader(repo.project).plan(service))]


def _keep_source_times(store: FeatureStore, objects: list[Any]) -> None:
    """Give each view's source the times the registry holds for it, unless the source changed.

    Feast writes a view's source, times included, into the view at every apply, and ``feast
    plan`` compares them once the view is materialized; new objects are stamped now. Keeping the
    registered times keeps the registry, and the definitions file that repeats them, unchanged
    when the YAML is.
    """
    registered = {view.name: view for view in store.list_feature_views()}
    for view in objects:
        old = registered.get(view.name) if isinstance(view, FeatureView) else None
        if old is None or old.batch_source is None or old.batch_source != view.batch_source:
            continue  # DataSource equality leaves the times out
        view.batch_source.created_timestamp = old.batch_source.created_timestamp
        view.batch_source.last_updated_timestamp = old.batch_source.last_updated_timestamp


def _source_times(store: FeatureStore) -> SourceTimes:
    """Each view's source's times as the registry holds them inside the view (what
    ``feast plan`` compares once the view is materialized)."""
    times = {}
    for view in store.list_feature_views():
        source = view.batch_source
        if source is not None and source.created_timestamp and source.last_updated_timestamp:
            times[source.name] = (source.created_timestamp, source.last_updated_timestamp)
    return times


def _plan_nothing(store: FeatureStore, definitions: str, filename: str) -> None:
    """Plan ``definitions`` against the registry as ``feast plan`` does, raise if that would
    change anything, and record the planned infrastructure (the online store's tables) in the
    registry, which ``FeatureStore.apply`` leaves out and ``feast plan`` compares."""
    registry_diff, _, infra = store.plan(repo_contents(load_definitions(definitions, filename)))
    changes = [
        f"{diff.transition_type.name.lower()} {diff.feast_object_type.value} {diff.name!r}"
        for diff in registry_diff.feast_object_diffs
        if diff.transition_type != TransitionType.UNCHANGED
    ]
    if changes:
        raise ValueError(
            f"feast plan of {filename} would change the registry just applied: "
            + "; ".join(changes)
        )
    store.registry.update_infra(infra, store.project, commit=True)


def _stale_objects(store: FeatureStore, wanted: list[Any]) -> list[Any]:
    """Registered entities, sources, views and services that ``wanted`` no longer has."""
    keep = {(type(o).__name__, o.name) for o in wanted}
    registered: list[Any] = [
        *(e for e in store.list_entities() if not e.name.startswith("__")),
        *store.list_data_sources(),
        *store.list_feature_views(),
        *store.list_feature_services(),
    ]
    kind = {Entity: "Entity", FeatureView: "FeatureView", FeatureService: "FeatureService"}
    stale = []
    for obj in registered:
        name = next((v for k, v in kind.items() if isinstance(obj, k)), "FileSource")
        if (name, obj.name) not in keep:
            stale.append(obj)
    return stale
