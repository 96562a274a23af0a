"""The opt-in in-process cache of a feature view: every online entity once, then dict lookups.

Why it exists: the floor under an uncached read is Feast's own ``OnlineStore.online_read``, paid
on every request. For small, slowly changing views (e.g. the candidate items, read hundreds at a
time) the reader instead loads every entity of the view once, through that same call and key
encoding (the keys are the distinct join keys of the view's Parquet source), and answers
requests from memory. When a cache is dropped (with the plans, after the registry file changes)
is the reader's business (:mod:`runtime.online_read`); this module builds a cache and reads it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from feast import FeatureView, FileSource

from runtime.online_plan import ViewPlan
from runtime.online_rows import ReadRows, feature_protos

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


def cached_columns(
    plan: ViewPlan, cache: ViewCache, columns: dict[str, list[Any]]
) -> list[list[Any] | np.ndarray]:
    """The columns :func:`runtime.online_rows.feature_columns` gives, from the cache.

    One lookup per row: the reader's answer for every view it serves from the cache.
    """
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


def load_view_cache(
    plan: ViewPlan, read_view: Callable[[ViewPlan, list[tuple[Any, ...]]], ReadRows]
) -> ViewCache:
    """Read every entity of the view's source through Feast's ``online_read`` (``read_view``).

    The same call and key encoding as an uncached read, in batches; entities the store
    does not hold, or holds only nulls for, are left out. The reader's ``load_cache`` calls it
    with its own ``read_view``.
    """
    rows: dict[Any, tuple[Any, ...]] = {}
    keys = source_entity_keys(plan.view, plan.key_names)
    for start in range(0, len(keys), _LOAD_BATCH):
        batch = keys[start : start + _LOAD_BATCH]
        read = read_view(plan, batch)
        held = [i for i, (_, values) in enumerate(read) if values is not None]
        protos = feature_protos(plan, [read[i] for i in held])
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


__all__: Sequence[str] = (
    "ALL_VIEWS",
    "ViewCache",
    "cached_columns",
    "load_view_cache",
    "source_entity_keys",
)
