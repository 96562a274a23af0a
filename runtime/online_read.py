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

The parts live beside this module: the per-service plans and value converters in
:mod:`runtime.online_plan`, the key encoding and row decoding around ``online_read`` in
:mod:`runtime.online_rows`, and the in-process view cache in :mod:`runtime.online_cache`.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from feast import FeatureStore
from feast.infra.online_stores.helpers import get_online_store_from_config
from feast.infra.online_stores.online_store import OnlineStore
from feast.protos.feast.types.Value_pb2 import Value as ValueProto

from runtime.online_cache import ALL_VIEWS, ViewCache, cached_columns, load_view_cache
from runtime.online_plan import ServicePlan, ViewPlan, plan_service
from runtime.online_rows import entity_key_protos, feature_columns, unique_keys


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
            entity_keys=entity_key_protos(plan, keys),
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

        The loading is :func:`runtime.online_cache.load_view_cache`, through :meth:`read_view`.
        """
        return load_view_cache(plan, self.read_view)

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
                features = cached_columns(view, self.view_cache(view), columns)
            else:
                keys, inverse = unique_keys(view, columns, n_rows)
                rows = self.read_view(view, keys) if keys else []
                features = feature_columns(view, rows, inverse)
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


__all__: Sequence[str] = ("OnlineReader", "column_order")
