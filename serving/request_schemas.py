"""One request schema per endpoint, built from the use case's YAML and cached per spec.

``POST /score {transaction}``: the transaction's fields are the ``events`` columns of the spec,
each typed by its ``dtype`` and held to the column's declared ``min``/``max``/``values`` (the
constraints the training data meets); the join keys the scorer reads are required, every other
column optional. ``POST /recommend {user_id, k, context, as_of}`` and ``POST /search {query, k,
as_of}``: the unit in the user entity's key type, ``k`` from 1 to :data:`MAX_K`, ``context``
holding only the use case's passthrough columns, ``as_of`` a time in range.

One rule for a field a schema does not name, at every level: it is rejected (422 naming the
field), so a typo such as ``{"user": 7}`` is never served as a request without a user, and
nothing reaches the request log that monitoring and the A/B analysis were not built to read.
Null is the same as absent for an optional field, and "is required" for a required one.

The schemas are ``TypedDict``s built at run time (the columns come from the YAML): validated, a
body is a plain dict of what was sent, and a column may be named anything, ``json`` or
``schema`` included, which a generated ``BaseModel``'s attributes would shadow.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Annotated, Any, NotRequired, Required

from pydantic import AfterValidator, ConfigDict, Field, StrictBool, StrictInt, TypeAdapter
from typing_extensions import TypedDict

from configs.schema.tables import ColumnSpec
from configs.schema.usecase import UseCaseSpec
from serving.requests import BoundedStr, FiniteFloat, RequestSchema, RequestTime, StoreInt

MAX_K = 1000
# unknown fields are errors; JSON values are taken as they are, never coerced ("1" is no id)
_CONFIG = ConfigDict(extra="forbid", strict=True)
# a column's description, hashable for the cache: (name, dtype, min, max, values, required)
ColumnKey = tuple[str, str, float | None, float | None, tuple[Any, ...] | None, bool]


def score_schema(spec: UseCaseSpec, keys: Iterable[str]) -> RequestSchema:
    """``{transaction: {...}}`` of ``spec``'s events columns, the ``keys`` required."""
    return _score_schema(_columns(spec.events.columns, set(keys)))


def funnel_schema(
    spec: UseCaseSpec, unit_field: str, unit_dtype: str, context: Iterable[str]
) -> RequestSchema:
    """``{<unit_field>, k, context, as_of}`` of ``/recommend`` or ``/search``; ``context`` takes
    the passthrough columns named, typed as their events columns."""
    columns = {c: spec.events.columns[c] for c in context if c in spec.events.columns}
    return _funnel_schema(unit_field, unit_dtype, _columns(columns, set()))


def _columns(columns: Mapping[str, ColumnSpec], required: set[str]) -> tuple[ColumnKey, ...]:
    return tuple(
        (
            name,
            column.dtype,
            column.min,
            column.max,
            tuple(column.values) if column.values is not None else None,
            name in required,
        )
        for name, column in columns.items()
    )


@lru_cache(maxsize=32)
def _score_schema(columns: tuple[ColumnKey, ...]) -> RequestSchema:
    transaction = _object("Transaction", columns)
    body = _typed_dict(
        "ScoreRequest",
        {"transaction": Required[transaction], "explain": NotRequired[StrictBool | None]},
    )
    fields = {
        (): ("explain", "transaction"),
        ("transaction",): tuple(sorted(c[0] for c in columns)),
    }
    return RequestSchema(TypeAdapter(body), fields)


@lru_cache(maxsize=32)
def _funnel_schema(
    unit_field: str, unit_dtype: str, context: tuple[ColumnKey, ...]
) -> RequestSchema:
    unit: Any = StoreInt if unit_dtype == "int" else Annotated[BoundedStr, Field(min_length=1)]
    body = _typed_dict(
        f"{unit_field.title()}Request",
        {
            unit_field: Required[unit],
            "k": NotRequired[Annotated[StrictInt, Field(ge=1, le=MAX_K)] | None],
            "context": NotRequired[_object("Context", context) | None],
            "as_of": NotRequired[RequestTime | None],
        },
    )
    fields = {
        (): tuple(sorted((unit_field, "k", "context", "as_of"))),
        ("context",): tuple(sorted(c[0] for c in context)),
    }
    return RequestSchema(TypeAdapter(body), fields)


def _object(name: str, columns: tuple[ColumnKey, ...]) -> Any:
    """A JSON object of the columns: the required ones required, the others optional."""
    fields = {
        column: Required[kind] if required else NotRequired[kind | None]
        for column, kind, required in ((c[0], _typed(*c[1:5]), c[5]) for c in columns)
    }
    return _typed_dict(name, fields)


def _typed_dict(name: str, fields: dict[str, Any]) -> Any:
    typed = TypedDict(name, fields)  # type: ignore[operator]
    typed.__pydantic_config__ = _CONFIG
    return typed


def _typed(
    dtype: str, low: float | None, high: float | None, values: tuple[Any, ...] | None
) -> Any:
    """The bounded type of a column of ``dtype``, with its declared range and allowed values."""
    base: Any = {
        "int": StoreInt,
        "float": FiniteFloat,
        "string": BoundedStr,
        "bool": StrictBool,
        "timestamp": RequestTime,
    }[dtype]
    if low is not None or high is not None:
        base = Annotated[base, Field(ge=low, le=high)]
    if values is not None:
        base = Annotated[base, AfterValidator(_one_of(values))]
    return base


def _one_of(values: tuple[Any, ...]) -> Any:
    allowed = frozenset(values)
    listed = ", ".join(repr(v) for v in values)

    def check(value: Any) -> Any:
        if value not in allowed:
            raise ValueError(f"expected one of {listed}")
        return value

    return check
