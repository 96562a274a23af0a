"""Feature-service plans for the fast online read: what to read from Feast's store and how to decode it.

Why it exists: resolving a feature service through Feast's registry (its views, features, join
keys and their types) costs far more than a read, so it is done once per service and kept as a
:class:`ServicePlan` of per-view :class:`ViewPlan` s. A plan also carries, per feature, the
converter from ``ValueProto`` s to Python values (exactly as ``feast_value_type_to_python_type``
returns them, a column at a time) and the finisher that shapes the column handed to
``pd.DataFrame``; and, per join key, the ``ValueProto`` field its entity values are encoded in.
The reader (:mod:`runtime.online_read`) and the view cache (:mod:`runtime.online_cache`) both
work from these plans.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

import numpy as np
from feast import FeatureStore, FeatureView
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.type_map import feast_value_type_to_python_type
from feast.value_type import ValueType

from runtime.layout import feature_column

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

# A feature's converter in a plan: a column of ValueProtos (None: nothing read) to Python values.
PythonColumn = Callable[[list[ValueProto | None]], list[Any]]
# A feature's finisher in a plan: its Python values to the column handed to ``pd.DataFrame``.
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
                columns=tuple(feature_column(prefix, f) for f in features),
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


__all__: Sequence[str] = (
    "Finisher",
    "PythonColumn",
    "ServicePlan",
    "ViewPlan",
    "plan_service",
    "python_value",
)
