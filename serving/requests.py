"""Request validation for the services: a bad request is an answer that names the field.

The value types here are what every endpoint's schema (:mod:`serving.request_schemas`) is made
of, each bounded so that an accepted request is one the rest of the system can carry: ids fit
the feature store's int64 keys, numbers are finite, strings are short, times parse and lie
within :data:`EARLIEST` .. :data:`LATEST`. A request that breaks one is :class:`RequestError`,
which the service answers with HTTP 422 and the field's dotted name, never a 500 from Feast's
key encoding, pandas' datetime range or a monitoring job reading the request log a day later.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import pandas as pd
from pydantic import (
    AfterValidator,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
)

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # the store's key type (Feast int64 join keys)
MAX_STRING_CHARS = 256  # a category, a country, an id as text: never a document
MAX_TIME_CHARS = 64
# request times the store, pandas (nanoseconds: 1677..2262) and the A/B analysis all read
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
_SHOWN_CHARS = 60  # of a rejected value, in the error message


class RequestError(ValueError):
    """A request that cannot be served as sent; ``field`` names what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    def body(self) -> dict[str, str]:
        return {"error": str(self), "field": self.field}


def _request_time(value: str) -> pd.Timestamp:
    """ISO 8601 (UTC when no zone is given) within EARLIEST..LATEST, as a UTC Timestamp.

    ``datetime.fromisoformat`` rather than ``pd.Timestamp``: it takes only ISO 8601 (not
    "now" or "yesterday"), is a C call, and its years 1..9999 are checked against the range
    before pandas, whose nanosecond range is narrower, sees the value.
    """
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("expected an ISO 8601 time such as 2025-01-31T12:00:00Z") from None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    if not EARLIEST <= moment < LATEST:
        raise ValueError(
            f"expected a time from {EARLIEST:%Y-%m-%d} to before {LATEST:%Y-%m-%d} (UTC)"
        )
    return pd.Timestamp(moment)


# JSON's integers, not floats or booleans, that fit an int64 key
StoreInt = Annotated[StrictInt, Field(ge=INT64_MIN, le=INT64_MAX)]
# a JSON number (an integer is a number too) that is finite: 1e999 parses to inf
FiniteFloat = Annotated[StrictFloat, Field(allow_inf_nan=False)]
BoundedStr = Annotated[StrictStr, Field(max_length=MAX_STRING_CHARS)]
RequestTime = Annotated[StrictStr, Field(max_length=MAX_TIME_CHARS), AfterValidator(_request_time)]


def now() -> pd.Timestamp:
    """The default request time."""
    return pd.Timestamp.now(tz="UTC")


@dataclass(frozen=True)
class RequestSchema:
    """An endpoint's request body: the pydantic type a body must match, and, for the
    messages, the fields each object in it takes (by the object's path: ``()`` is the body)."""

    adapter: TypeAdapter[dict[str, Any]]
    fields: Mapping[tuple[str, ...], tuple[str, ...]]

    def validate(self, payload: Any) -> dict[str, Any]:
        """``payload`` as validated (a plain dict of what was sent, times as UTC Timestamps);
        the first problem as :class:`RequestError` naming its field."""
        try:
            return self.adapter.validate_python(payload)
        except ValidationError as error:
            errors = error.errors(include_url=False)
            # an unknown field first: {"user": 7} is a typo of user_id more than a missing id
            unknown = [e for e in errors if e["type"] == "extra_forbidden"]
            raise self._error((unknown or errors)[0]) from None

    def _error(self, first: Mapping[str, Any]) -> RequestError:
        """pydantic's error in the services' words: the dotted field and what was expected."""
        loc = tuple(str(part) for part in first["loc"])
        field = ".".join(field_name(part) for part in loc) or "body"
        kind, value = first["type"], first.get("input")
        if kind == "missing" or (loc and value is None and kind.endswith("_type")):
            return RequestError(field, "is required")
        if kind == "extra_forbidden":
            allowed = self.fields.get(loc[:-1], ())
            expected = f"one of {', '.join(allowed)}" if allowed else "none: it takes no fields"
            return RequestError(field, f"unknown field; expected {expected}")
        if kind in ("dict_type", "model_type"):
            return RequestError(field, f"expected a JSON object, got {_json_type(value)}")
        message = first["msg"].removeprefix("Value error, ")
        return RequestError(field, f"{message[:1].lower()}{message[1:]}, got {_shown(value)}")


def field_name(key: str, limit: int = 80) -> str:
    """A JSON key as an error names it: ``""`` for the empty key, a long one cut short."""
    if not key:
        return '""'
    return key if len(key) <= limit else f"{key[:limit]}..."


def _json_type(value: Any) -> str:
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, bool):
        return "boolean"
    return {str: "string", int: "integer", float: "number", type(None): "null"}.get(
        type(value), type(value).__name__
    )


def _shown(value: Any) -> str:
    """``value`` as the message shows it: its JSON type and at most a line of it."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**30:
        try:
            return f"an integer of {len(str(abs(value)))} digits"
        except ValueError:  # past Python's 4,300 digits: only from the in-process API
            return "an integer of over 4300 digits"
    try:
        text = json.dumps(value)
    except (TypeError, ValueError, RecursionError):  # not from JSON: the in-process API
        text = repr(value)
    if len(text) > _SHOWN_CHARS:
        text = f"{text[:_SHOWN_CHARS]}... ({len(text)} characters)"
    return f"{_json_type(value)} {text}"
