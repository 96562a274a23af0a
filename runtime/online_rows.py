"""Between a view plan and Feast's ``online_read``: entity keys out, feature columns back.

Why it exists: every read of a view, whether it answers a request or loads the view cache, makes
the same two conversions: the request's distinct entity keys become the ``EntityKeyProto`` s that
Feast's online store serializes, and the rows the store returns (one ``{feature: ValueProto}``
dict per key, ``None`` where it holds nothing) become one column of Python values per feature,
through the plan's converters. Both are hot loops, written to stay in C where they can.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter
from typing import Any

import numpy as np
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto

from runtime.online_plan import ViewPlan

_MUTABLE = (list, dict)

# What ``OnlineStore.online_read`` returns: per entity key, its timestamp and feature values.
ReadRows = list[tuple[Any, dict[str, ValueProto] | None]]


def unique_keys(
    plan: ViewPlan, columns: dict[str, list[Any]], n_rows: int
) -> tuple[list[tuple[Any, ...]], list[int] | None]:
    """The distinct entity keys of the request and, when some repeat, each row's key index.

    The reader reads each distinct key once and spreads the answer back over the rows.
    """
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


def entity_key_protos(plan: ViewPlan, keys: list[tuple[Any, ...]]) -> list[EntityKeyProto]:
    """The keys as Feast's store takes them: one ``EntityKeyProto`` each, in the plan's fields."""
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


def feature_protos(plan: ViewPlan, rows: ReadRows) -> list[tuple[ValueProto | None, ...]]:
    """The read ``ValueProto`` s as one tuple per feature (``None`` where nothing was read).

    One ``itemgetter`` call per row and a ``zip`` transpose, both in C; a row that lacks a
    feature (e.g. one added since the last materialization) falls back to ``dict.get``. Shared
    by the uncached read (:func:`feature_columns`) and the cache load.
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


def feature_columns(
    plan: ViewPlan, rows: ReadRows, inverse: list[int] | None
) -> list[list[Any] | np.ndarray]:
    """One column per feature, in request order: Python values, None where nothing was read.

    What the reader hands the frame for every view it does not serve from the cache.
    """
    out = []
    columns = zip(feature_protos(plan, rows), plan.pythons, plan.finishers, strict=True)
    for protos, python, finish in columns:
        values = python(list(protos))
        if inverse is not None:
            values = _spread(values, inverse)
        out.append(finish(values))
    return out


def _spread(values: list[Any], inverse: list[int]) -> list[Any]:
    """Each row's value from its key's: converting once per distinct key, not once per row,
    matters when 500 candidate rows of one request share one user. A list or dict value is
    copied per row, so rows never share a mutable object (as when each row's value was
    converted)."""
    spread = [values[i] for i in inverse]
    if any(type(value) in _MUTABLE for value in values):
        return [value.copy() if type(value) in _MUTABLE else value for value in spread]
    return spread


__all__: Sequence[str] = (
    "ReadRows",
    "entity_key_protos",
    "feature_columns",
    "feature_protos",
    "unique_keys",
)
