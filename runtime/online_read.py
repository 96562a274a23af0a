"""The fast online read: Feast's own online store, without the SDK's per-row Python.

Why it exists: ``FeatureStore.get_online_features`` spends Python on every entity row and value
(feature-service resolution, entity protos built and sorted twice, a ``GetOnlineFeaturesResponse``
protobuf assembled value by value and then unpacked again by ``to_df``). At 100 entities of 20
features that is about 5 ms on top of the store read itself (``bench/online_read.py``).

What it keeps from Feast, so Feast stays the source of truth and there is no second copy of the
storage format:

* the registry: the service's views, features and join keys are resolved from Feast's registry
  and cached per service; the cache is dropped when the registry file changes (its mtime, size
  and inode), so a new ``apply`` or ``materialize`` is picked up on the next read;
* the online store: reads go through the configured ``OnlineStore.online_read`` (SQLite or
  Redis, built with Feast's own ``get_online_store_from_config``), with ``EntityKeyProto`` keys
  that the store serializes with ``serialize_entity_key``. That call is the floor: on SQLite,
  which keeps one row per feature, it alone takes about 5 ms for 100 entities of 20 features;
* the values: ``ValueProto`` messages are turned into Python values exactly as
  ``feast_value_type_to_python_type`` does, a column at a time: the declared field is read
  directly and anything falsy (null, zero, empty, another kind) goes to that function's logic.

Opt-in, a view can be served from an in-process cache instead (``cached_views``): the floor
above is Feast's own ``online_read``, so for small, slowly changing views the reader loads every
entity once through that same call (the keys are the distinct join keys of the view's Parquet
source) and answers requests by dict lookup. The cache is dropped together with the plans when
the registry file changes, and Feast rewrites that file on every materialization (``materialize``
and ``materialize_incremental`` call ``Registry.apply_materialization``, which appends the
interval and commits the registry), so the next read after a materialization, in this process or
another, reloads it. Writes that bypass the registry (``push``, ``write_to_online_store``) are not
seen by a cached view, nor are entities in the store that its source file no longer has.

Like the SDK (feast 0.67), no TTL is applied at read time: what materialization wrote is served.
Unknown entities come back as nulls, and the request's join-key columns are echoed as the SDK
echoes them. The frame is built with ``pd.DataFrame`` from the same Python values as
``OnlineResponse.to_df`` (float columns pre-built as the float64 arrays pandas would infer), so
values and dtypes are identical; the integration tests compare the two frame for frame.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from feast import FeatureStore, FeatureView, FileSource
from feast.infra.online_stores.helpers import get_online_store_from_config
from feast.infra.online_stores.online_store import OnlineStore
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.type_map import feast_value_type_to_python_type
from feast.value_type import ValueType

# ValueProto kinds that feast_value_type_to_python_type returns as the attribute itself ...
_SCALAR_KINDS = frozenset(
    {"double_val", "float_val", "int64_val", "int32_val", "string_val", "bytes_val", "bool_val"}
)
# ... and as ``list(attribute.val)``.
_LIST_KINDS = frozenset(f"{kind[:-4]}_list_val" for kind in _SCALAR_KINDS)
# Declared feature types whose values need no type hint (UUID types do: strings become UUIDs).
_PLAIN_TYPES = frozenset(
    {
        ValueType.DOUBLE,
        ValueType.FLOAT,
        ValueType.INT64,
        ValueType.INT32,
        ValueType.STRING,
        ValueType.BYTES,
        ValueType.BOOL,
        ValueType.DOUBLE_LIST,
        ValueType.FLOAT_LIST,
        ValueType.INT64_LIST,
        ValueType.INT32_LIST,
        ValueType.STRING_LIST,
        ValueType.BYTES_LIST,
        ValueType.BOOL_LIST,
        ValueType.UNIX_TIMESTAMP,
        ValueType.UNIX_TIMESTAMP_LIST,
    }
)
# The ValueProto field a feature declared as each type is written to (as
# python_values_to_proto_values does); timestamps are left to feast_value_type_to_python_type.
_VALUE_FIELDS = {
    ValueType.DOUBLE: "double_val",
    ValueType.FLOAT: "float_val",
    ValueType.INT64: "int64_val",
    ValueType.INT32: "int32_val",
    ValueType.STRING: "string_val",
    ValueType.BYTES: "bytes_val",
    ValueType.BOOL: "bool_val",
    ValueType.DOUBLE_LIST: "double_list_val",
    ValueType.FLOAT_LIST: "float_list_val",
    ValueType.INT64_LIST: "int64_list_val",
    ValueType.INT32_LIST: "int32_list_val",
    ValueType.STRING_LIST: "string_list_val",
    ValueType.BYTES_LIST: "bytes_list_val",
    ValueType.BOOL_LIST: "bool_list_val",
}
# The ValueProto field an entity value of each type goes into (as python_values_to_proto_values).
_KEY_FIELDS = {
    ValueType.INT64: "int64_val",
    ValueType.INT32: "int32_val",
    ValueType.STRING: "string_val",
    ValueType.BYTES: "bytes_val",
}

ReadRows = list[tuple[Any, dict[str, ValueProto] | None]]
PythonColumn = Callable[[list[ValueProto | None]], list[Any]]
Finisher = Callable[[list[Any]], list[Any] | np.ndarray]


def python_value(value: ValueProto) -> Any:
    """``feast_value_type_to_python_type(value)`` with its common cases inlined."""
    kind = value.WhichOneof("val")
    if kind is None:
        return None
    if kind in _SCALAR_KINDS:
        return getattr(value, kind)
    if kind in _LIST_KINDS:
        return list(getattr(value, kind).val)
    return feast_value_type_to_python_type(value)


def _python_column(protos: list[ValueProto | None]) -> list[Any]:
    """:func:`python_value` over a column, inlined: this loop runs once per value read."""
    scalar = _SCALAR_KINDS
    return [
        None
        if value is None or (kind := value.WhichOneof("val")) is None
        else getattr(value, kind)
        if kind in scalar
        else python_value(value)
        for value in protos
    ]


def _field_column(field: str) -> Callable[[list[ValueProto | None]], list[Any]]:
    """A converter that reads the declared ``field`` of each value straight away.

    ``WhichOneof`` is the slow part of :func:`python_value` (about 0.1 us a value, 2,000 values
    a request). A truthy ``field`` can only be the value that is set (it is a ``oneof``), so only
    falsy ones (0, "", an empty list, a null, another kind) need :func:`python_value`; its answer
    is the same for every value either way.
    """
    get = attrgetter(f"{field}.val" if field.endswith("_list_val") else field)
    if field.endswith("_list_val"):
        return lambda protos: [
            None if value is None else list(got) if (got := get(value)) else python_value(value)
            for value in protos
        ]
    return lambda protos: [
        None if value is None else got if (got := get(value)) else python_value(value)
        for value in protos
    ]


def _float_array(column: list[Any]) -> list[Any] | np.ndarray:
    """A float feature's Python values as the float64 array ``pd.DataFrame`` would infer.

    Handing pandas the array skips its per-value type inference. A column of nothing but nulls
    stays a list: pandas makes that an ``object`` column of ``None``, and so must we.
    """
    if column.count(None) == len(column):
        return column
    return np.array(column, dtype=np.float64)


def _as_is(column: list[Any]) -> list[Any]:
    return column


def _python_converter(value_type: ValueType) -> PythonColumn:
    """ValueProtos to Python values for a feature declared as ``value_type``."""
    field = _VALUE_FIELDS.get(value_type)
    if field is not None:
        return _field_column(field)
    if value_type in _PLAIN_TYPES:
        return _python_column

    def typed(protos: list[ValueProto | None]) -> list[Any]:
        # e.g. UUID types, whose strings the type hint turns into UUIDs
        return [
            None if value is None else feast_value_type_to_python_type(value, value_type)
            for value in protos
        ]

    return typed


def _finisher(value_type: ValueType) -> Finisher:
    """Python values to the column handed to ``pd.DataFrame`` (see :func:`_float_array`)."""
    return _float_array if value_type in (ValueType.DOUBLE, ValueType.FLOAT) else _as_is


@dataclass(frozen=True)
class ViewPlan:
    """How to read one feature view of a service: resolved once, reused for every request."""

    view: FeatureView
    join_keys: tuple[str, ...]  # request columns, in the view's entity order
    key_names: tuple[str, ...]  # the view's own join keys (differ only under a join_key_map)
    key_fields: tuple[str, ...]  # ValueProto field of each key
    features: tuple[str, ...]
    columns: tuple[str, ...]  # output names, <view>__<feature>
    pythons: tuple[PythonColumn, ...]  # one per feature: ValueProtos to Python values
    finishers: tuple[Finisher, ...]  # one per feature: Python values to the frame's column


@dataclass(frozen=True)
class ServicePlan:
    """All views of a feature service, in the service's order."""

    name: str
    views: tuple[ViewPlan, ...]
    join_keys: frozenset[str]
    # Request columns the SDK returns: the join key of any entity of the project (not only of
    # this service); other request columns it drops.
    echoed: frozenset[str]


def plan_service(store: FeatureStore, service: str) -> ServicePlan:
    """Resolve ``service`` from the (cached) registry into per-view read plans."""
    feature_service = store.get_feature_service(service, allow_cache=True)
    views = []
    for projection in feature_service.feature_view_projections:
        view = store.get_feature_view(projection.name, allow_registry_cache=True)
        key_types = {f.name: f.dtype.to_value_type() for f in view.entity_columns}
        key_names = tuple(
            store.get_entity(entity, allow_registry_cache=True).join_key for entity in view.entities
        )
        feature_types = {f.name: f.dtype.to_value_type() for f in view.features}
        features = tuple(f.name for f in projection.features)
        prefix = projection.name_to_use()
        views.append(
            ViewPlan(
                view=view,
                join_keys=tuple(projection.join_key_map.get(k, k) for k in key_names),
                key_names=key_names,
                key_fields=tuple(_KEY_FIELDS[key_types[k]] for k in key_names),
                features=features,
                columns=tuple(f"{prefix}__{f}" for f in features),
                pythons=tuple(_python_converter(feature_types[f]) for f in features),
                finishers=tuple(_finisher(feature_types[f]) for f in features),
            )
        )
    join_keys = frozenset(k for plan in views for k in plan.join_keys)
    project_keys = {entity.join_key for entity in store.list_entities(allow_cache=True)}
    return ServicePlan(
        name=service,
        views=tuple(views),
        join_keys=join_keys,
        echoed=join_keys.union(project_keys),
    )


def _unique_keys(
    plan: ViewPlan, columns: dict[str, list[Any]], n_rows: int
) -> tuple[list[tuple[Any, ...]], list[int] | None]:
    """The distinct entity keys of the request and, when some repeat, each row's key index."""
    if len(plan.join_keys) == 1:
        keys = [(value,) for value in columns[plan.join_keys[0]]]
    else:
        keys = list(zip(*(columns[k] for k in plan.join_keys), strict=True))
    positions = dict.fromkeys(keys)
    if len(positions) == n_rows:
        return keys, None
    for index, key in enumerate(positions):
        positions[key] = index
    return list(positions), [positions[key] for key in keys]


def _entity_key_protos(plan: ViewPlan, keys: list[tuple[Any, ...]]) -> list[EntityKeyProto]:
    names = list(plan.key_names)
    fields = plan.key_fields
    if len(fields) == 1:
        field = fields[0]
        return [
            EntityKeyProto(join_keys=names, entity_values=[ValueProto(**{field: key[0]})])
            for key in keys
        ]
    return [
        EntityKeyProto(
            join_keys=names,
            entity_values=[ValueProto(**{f: v}) for f, v in zip(fields, key, strict=True)],
        )
        for key in keys
    ]


def _feature_protos(plan: ViewPlan, rows: ReadRows) -> list[tuple[ValueProto | None, ...]]:
    """The read ``ValueProto`` s as one tuple per feature (``None`` where nothing was read).

    One ``itemgetter`` call per row and a ``zip`` transpose, both in C; a row that lacks a
    feature (e.g. one added since the last materialization) falls back to ``dict.get``.
    """
    features = plan.features
    nothing = (None,) * len(features)
    get = itemgetter(*features) if len(features) > 1 else lambda values: (values[features[0]],)
    try:
        table = [nothing if values is None else get(values) for _, values in rows]
    except KeyError:
        table = [
            nothing if values is None else tuple(values.get(name) for name in features)
            for _, values in rows
        ]
    if not table:
        return [() for _ in features]
    return list(zip(*table, strict=True))


def _feature_columns(
    plan: ViewPlan, rows: ReadRows, inverse: list[int] | None
) -> list[list[Any] | np.ndarray]:
    """One column per feature, in request order: Python values, None where nothing was read."""
    out = []
    columns = zip(_feature_protos(plan, rows), plan.pythons, plan.finishers, strict=True)
    for protos, python, finish in columns:
        if inverse is not None:
            protos = [protos[i] for i in inverse]
        out.append(finish(python(list(protos))))
    return out


ALL_VIEWS = "*"  # in ``cached_views``: cache every view
_LOAD_BATCH = 1000  # entity keys per ``online_read`` while loading a cache (SQLite's IN list)


@dataclass(frozen=True)
class ViewCache:
    """Every online entity of one view, as Python values: a request is served by dict lookups.

    ``rows`` maps an entity key (the value itself for one join key, else a tuple in the view's
    entity order) to one value per feature of the plan. Only entities with a value in the online
    store are kept; any other misses and reads as nulls, as in the SDK.
    """

    rows: dict[Any, tuple[Any, ...]]
    # per feature: values are lists or dicts, handed out as copies so that a caller who mutates
    # a returned value cannot change the cache
    mutable: tuple[bool, ...]


def source_entity_keys(view: FeatureView, key_names: Sequence[str]) -> list[tuple[Any, ...]]:
    """The distinct join keys of ``view``'s batch source: every entity materialization can write.

    Materialization copies the source's latest row per entity into the online store, so the
    entities of the Parquet file are the candidates; the store itself says which it holds.
    """
    source = view.batch_source
    if not isinstance(source, FileSource):
        raise TypeError(f"cannot list the entities of {view.name!r}: its source is not a file")
    renamed = {column: name for name, column in source.field_mapping.items()}
    columns = [renamed.get(name, name) for name in key_names]
    table = pq.read_table(source.path, columns=columns).drop_null()
    distinct = table.group_by(columns).aggregate([]).to_pydict()
    return list(zip(*(distinct[c] for c in columns), strict=True))


def _cache_key(key: tuple[Any, ...]) -> Any:
    return key[0] if len(key) == 1 else key


def _request_keys(plan: ViewPlan, columns: dict[str, list[Any]]) -> list[Any]:
    """Each request row's key, shaped as :class:`ViewCache` keys."""
    if len(plan.join_keys) == 1:
        return columns[plan.join_keys[0]]
    return list(zip(*(columns[k] for k in plan.join_keys), strict=True))


def _cached_columns(
    plan: ViewPlan, cache: ViewCache, columns: dict[str, list[Any]]
) -> list[list[Any] | np.ndarray]:
    """The columns :func:`_feature_columns` gives, from the cache: one lookup per row."""
    nothing = (None,) * len(plan.features)
    get = cache.rows.get
    table = [get(key, nothing) for key in _request_keys(plan, columns)]
    values = list(zip(*table, strict=True)) if table else [() for _ in plan.features]
    out = []
    for column, finish, mutable in zip(values, plan.finishers, cache.mutable, strict=True):
        column = list(column)
        if mutable:
            column = [None if value is None else value.copy() for value in column]
        out.append(finish(column))
    return out


class OnlineReader:
    """Online reads of one Feast project's feature services (see the module docstring)."""

    def __init__(self, store: FeatureStore, cached_views: Collection[str] = ()) -> None:
        """``cached_views`` names the views served from an in-process :class:`ViewCache`
        (``"*"``: all). Caching trades memory (every online entity of the view as Python
        values) for latency; it suits small, slowly changing views, since a cache is reloaded
        in full after every materialization."""
        self._store = store
        self._cached_views = frozenset(cached_views)
        self._caches: dict[tuple[str, tuple[str, ...]], ViewCache] = {}
        self._config = store.config
        self._online: OnlineStore = get_online_store_from_config(store.config.online_store)
        self._registry_file = _registry_file(store)
        self._registry_stamp: tuple[int, int, int] | None = None
        self._plans: dict[str, ServicePlan] = {}

    def plan(self, service: str) -> ServicePlan:
        """The cached plan of ``service``, rebuilt after the registry file changes."""
        stamp = _stamp(self._registry_file)
        if stamp != self._registry_stamp:
            # also on the first plan: the store's registry cache may predate another process's
            # apply or materialize
            self._store.refresh_registry()
            self._plans.clear()
            # a materialization is recorded in the registry: cached values may be stale
            self._caches.clear()
            self._registry_stamp = stamp
        plan = self._plans.get(service)
        if plan is None:
            plan = self._plans[service] = plan_service(self._store, service)
        return plan

    def read_view(
        self, plan: ViewPlan, keys: list[tuple[Any, ...]]
    ) -> list[tuple[Any, dict[str, ValueProto] | None]]:
        """Feast's ``online_read`` for the distinct ``keys`` of one view."""
        return self._online.online_read(
            config=self._config,
            table=plan.view,
            entity_keys=_entity_key_protos(plan, keys),
            # a fresh list: the Redis store appends its timestamp field to it
            requested_features=list(plan.features),
        )

    def is_cached(self, view: str) -> bool:
        """Whether ``view`` is served from the in-process cache."""
        return view in self._cached_views or ALL_VIEWS in self._cached_views

    def view_cache(self, plan: ViewPlan) -> ViewCache:
        """The cache of one view, loaded on first use after each registry change.

        Call :meth:`plan` first: it drops the caches when the registry file changed.
        """
        name = (plan.view.name, plan.features)
        cache = self._caches.get(name)
        if cache is None:
            cache = self._caches[name] = self.load_cache(plan)
        return cache

    def load_cache(self, plan: ViewPlan) -> ViewCache:
        """Read every entity of the view's source through Feast's ``online_read``.

        The same call and key encoding as an uncached read, in batches; entities the store
        does not hold, or holds only nulls for, are left out.
        """
        rows: dict[Any, tuple[Any, ...]] = {}
        keys = source_entity_keys(plan.view, plan.key_names)
        for start in range(0, len(keys), _LOAD_BATCH):
            batch = keys[start : start + _LOAD_BATCH]
            read = self.read_view(plan, batch)
            held = [i for i, (_, values) in enumerate(read) if values is not None]
            protos = _feature_protos(plan, [read[i] for i in held])
            values = [python(list(p)) for p, python in zip(protos, plan.pythons, strict=True)]
            for i, row in zip(held, zip(*values, strict=True), strict=True):
                # Redis answers an unknown key with empty values, not None: a row of nulls is
                # kept out, since a miss reads as the same nulls
                if row.count(None) < len(row):
                    rows[_cache_key(batch[i])] = row
        mutable = tuple(
            any(isinstance(row[f], list | dict) for row in rows.values())
            for f in range(len(plan.features))
        )
        return ViewCache(rows=rows, mutable=mutable)

    def read(
        self, service: str, entity_rows: pd.DataFrame, views: Collection[str] | None = None
    ) -> pd.DataFrame:
        """The join-key columns of ``entity_rows`` (in its order; see ``ServicePlan.echoed``)
        followed by every feature of ``service`` as ``<view>__<feature>``; one output row per
        input row. ``views`` reads only those views of the service (then only their join keys
        are needed), e.g. a user's views before any candidate item is known."""
        columns = {c: entity_rows[c].tolist() for c in entity_rows.columns}
        return pd.DataFrame(self.read_columns(service, columns, views), copy=False)

    def read_columns(
        self,
        service: str,
        entity_rows: dict[str, list[Any]],
        views: Collection[str] | None = None,
    ) -> dict[str, list[Any] | np.ndarray]:
        """:meth:`read` as ``{column: values}`` from ``{join key: values}``, with no frame in
        between: what a service scoring one request needs, at a fraction of the cost."""
        plan = self.plan(service)
        chosen = [v for v in plan.views if views is None or v.view.name in views]
        needed = {k for view in chosen for k in view.join_keys}
        missing = needed.difference(entity_rows)
        if missing:
            raise KeyError(f"entity_rows lacks join keys {sorted(missing)} of {service!r}")
        columns = {c: list(v) for c, v in entity_rows.items() if c in plan.echoed}
        n_rows = len(next(iter(entity_rows.values()))) if entity_rows else 0
        data: dict[str, list[Any] | np.ndarray] = dict(columns)
        for view in chosen:
            if self.is_cached(view.view.name):
                features = _cached_columns(view, self.view_cache(view), columns)
            else:
                keys, inverse = _unique_keys(view, columns, n_rows)
                rows = self.read_view(view, keys) if keys else []
                features = _feature_columns(view, rows, inverse)
            for name, values in zip(view.columns, features, strict=True):
                data[name] = values
        return data

    def close(self) -> None:
        """Release the store's connections (SQLite file handle, Redis pool)."""
        connection = getattr(self._online, "_conn", None)
        if connection is not None:
            connection.close()
        client = getattr(self._online, "_client", None)
        if client is not None:
            client.close()


def _registry_file(store: FeatureStore) -> Path:
    path = Path(store.config.registry.path)
    return path if path.is_absolute() else Path(store.repo_path) / path


def _stamp(path: Path) -> tuple[int, int, int]:
    """Changes whenever the registry file is rewritten."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return (0, 0, 0)
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)


def column_order(frame: pd.DataFrame, plan: ServicePlan) -> list[str]:
    """The request's columns first (in ``frame``'s order), then the service's features in service
    order: the order of :meth:`OnlineReader.read`."""
    features = [c for view in plan.views for c in view.columns]
    known = set(features)
    return [c for c in frame.columns if c not in known] + features


__all__: Sequence[str] = (
    "ALL_VIEWS",
    "OnlineReader",
    "ServicePlan",
    "ViewCache",
    "ViewPlan",
    "column_order",
    "plan_service",
    "python_value",
    "source_entity_keys",
)
