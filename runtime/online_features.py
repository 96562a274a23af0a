"""Request-time features: Feast's online store through the fast reader, as the models expect them.

Three things happen between the store and a model: ``time_since_last`` aggregates (stored as the
moment of the last event) become seconds before the request, exactly as the training set's
point-in-time join makes them seconds before the label row; a view with no row for a key (an
unknown user, a brand-new item) is a *miss*, which leaves that view's features null — the value
the models were trained on for "no history" — and is counted; and the views keyed only by the
cached keys are answered from the reader's in-process cache (reloaded after every
materialization) unless ``PLAYBOOK_LIVE_ITEM_VIEWS`` is set: item-side views, read for hundreds
of candidates per request, and the views of the YAML's ``serving.cached_entities`` (fraud's
merchants: two of the four store queries of a ``/score`` request).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Collection
from pathlib import Path

import numpy as np
import pandas as pd
from feast import FeatureStore

from runtime.models.features import seconds_since_last, seconds_since_last_row
from runtime.online_plan import ServicePlan, plan_service
from runtime.online_read import OnlineReader

LIVE_ITEM_VIEWS_ENV = "PLAYBOOK_LIVE_ITEM_VIEWS"


class OnlineFeatures:
    """Online reads for one use case's feature services, with miss counting."""

    def __init__(self, repo: Path | None, cached_keys: Collection[str] = ()) -> None:
        """``cached_keys``: views keyed only by these join keys (the candidate items, the
        YAML's cached entities) are cached; :attr:`cached_views` names them."""
        self.available = repo is not None and (Path(repo) / "feature_store.yaml").exists()
        self._reader: OnlineReader | None = None
        self._lock = threading.Lock()
        self.misses = 0
        self.reads = 0
        self.cached_views: frozenset[str] = frozenset()
        if self.available:
            store = FeatureStore(repo_path=str(repo))
            self._services = [service.name for service in store.list_feature_services()]
            cached: set[str] = set()
            if cached_keys and not os.environ.get(LIVE_ITEM_VIEWS_ENV):
                for service in self._services:
                    for plan in plan_service(store, service).views:
                        if set(plan.join_keys) <= set(cached_keys):
                            cached.add(plan.view.name)
            self.cached_views = frozenset(cached)
            self._reader = OnlineReader(store, cached_views=cached)

    def warm(self) -> None:
        """Plan every feature service and load the cached views now, not on the first request
        (loading a 100K-item view takes about a second)."""
        if self._reader is None:
            return
        with self._lock:
            for service in self._services:
                for view in self._reader.plan(service).views:
                    if self._reader.is_cached(view.view.name):
                        self._reader.view_cache(view)

    def view_columns(self, service: str) -> dict[str, tuple[str, ...]]:
        """Each view of ``service`` (in service order) and the columns a read names its features."""
        if self._reader is None:
            return {}
        return {v.view.name: v.columns for v in self._reader.plan(service).views}

    def views_keyed_by(self, service: str, keys: Collection[str]) -> list[str]:
        """The views of ``service`` whose join keys are all among ``keys``."""
        if self._reader is None:
            return []
        plan = self._reader.plan(service)
        return [v.view.name for v in plan.views if set(v.join_keys) <= set(keys)]

    def read(
        self,
        service: str,
        rows: pd.DataFrame,
        as_of: pd.Timestamp | pd.Series,
        views: Collection[str] | None = None,
    ) -> tuple[pd.DataFrame, np.ndarray]:
        """``rows`` with the service's features as of ``as_of`` (one time, or one per row
        aligned with ``rows``), and the misses per row.

        A miss is one (row, view) pair with no stored values. Without a feature store (a
        bundle built for a use case with no feature views) the rows come back unchanged.
        """
        if self._reader is None:
            return rows.copy(), np.zeros(len(rows), dtype=int)
        keys = {c: rows[c].tolist() for c in rows.columns}
        data, misses = self.read_columns(service, keys, len(rows), views)
        return seconds_since_last(pd.DataFrame(data, copy=False), as_of), misses

    def read_rows(
        self, service: str, keys: dict[str, list[object]], as_of: list[pd.Timestamp]
    ) -> tuple[list[dict[str, object]], list[int]]:
        """Entity rows' features as one ``{column: value}`` per row (each as of its own time),
        and the misses per row: :meth:`read` without a frame, for endpoints scoring a few rows,
        where pandas would cost more than the store read."""
        n_rows = len(as_of)
        if self._reader is None:
            return [{k: v[i] for k, v in keys.items()} for i in range(n_rows)], [0] * n_rows
        data, misses = self.read_columns(service, keys, n_rows)
        rows = [{name: values[i] for name, values in data.items()} for i in range(n_rows)]
        stamped = [seconds_since_last_row(r, t) for r, t in zip(rows, as_of, strict=True)]
        return stamped, misses.tolist()

    def read_columns(
        self,
        service: str,
        keys: dict[str, list[object]],
        n_rows: int,
        views: Collection[str] | None = None,
    ) -> tuple[dict[str, list[object] | np.ndarray], np.ndarray]:
        """The stored values as ``{column: values}`` for ``n_rows`` rows of join ``keys``, and
        the misses per row (counted): no frame, and ``time_since_last`` features left as the
        stored moments (no request time is given). :meth:`read` and :meth:`read_rows` build on
        it; on its own it serves a column or two of many rows, e.g. the category of every pooled
        item of the feed, where a frame of 2,000 rows cost more than the read."""
        if self._reader is None:
            return dict(keys), np.zeros(n_rows, dtype=int)
        with self._lock:  # the SQLite connection of Feast's online store is not thread-safe
            data = self._reader.read_columns(service, keys, views)
            plan = self._reader.plan(service)
        misses = misses_per_row(plan, data, n_rows, views)
        self.reads += n_rows
        self.misses += int(misses.sum())
        return data, misses


def _nulls(values: list[object] | np.ndarray) -> np.ndarray:
    """Per value: null (None or NaN)."""
    if isinstance(values, np.ndarray) and values.dtype.kind == "f":
        return np.isnan(values)
    return np.fromiter((v is None or v != v for v in values), dtype=bool, count=len(values))


def misses_per_row(
    plan: ServicePlan,
    data: dict[str, list[object] | np.ndarray],
    n_rows: int,
    views: Collection[str] | None = None,
) -> np.ndarray:
    """Per row, the views with no stored value: every feature of the view null on that row.

    Counted on the reader's columns, before any frame exists: ``frame.isna().all(axis=1)``
    over hundreds of candidate rows cost a fifth of a feed request.
    """
    misses = np.zeros(n_rows, dtype=int)
    for view in plan.views:
        if not view.columns or (views is not None and view.view.name not in views):
            continue
        missing = np.ones(n_rows, dtype=bool)
        for column in view.columns:
            missing &= _nulls(data[column])
            if not missing.any():  # every row has a value: the view's other columns can't matter
                break
        misses += missing
    return misses
