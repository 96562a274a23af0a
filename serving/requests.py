"""Request validation for the services: a bad request is an answer that names the field.

BentoML hands the JSON body's fields over untyped (the API methods declare ``Any``) and the
handlers check them here, so every mistake -- a missing field, a string where an id belongs, a
``k`` out of range, an unknown field -- becomes :class:`RequestError`, which the service turns
into HTTP 422 with the field's name, never a 500 from deep inside a model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

# entity dtypes of the schema -> Python types accepted in a request
_TYPES: dict[str, tuple[type, ...]] = {"int": (int,), "string": (str,), "float": (int, float)}


class RequestError(ValueError):
    """A request that cannot be served as sent; ``field`` names what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    def body(self) -> dict[str, str]:
        return {"error": str(self), "field": self.field}


def entity_value(field: str, value: Any, dtype: str) -> Any:
    """A join-key value of the entity's dtype (``int``, ``string``); bool is not an int here."""
    if value is None:
        raise RequestError(field, "is required")
    accepted = _TYPES.get(dtype, (int, str))
    if isinstance(value, bool) or not isinstance(value, accepted):
        raise RequestError(field, f"expected {dtype}, got {type(value).__name__} {value!r}")
    return value


def top_k(value: Any, default: int, field: str = "k", limit: int = 1000) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
        raise RequestError(field, f"expected an integer from 1 to {limit}, got {value!r}")
    return value


def mapping(field: str, value: Any, required: bool = False) -> dict[str, Any]:
    if value is None and not required:
        return {}
    if not isinstance(value, Mapping):
        raise RequestError(field, f"expected a JSON object, got {type(value).__name__}")
    return dict(value)


def moment(field: str, value: Any) -> pd.Timestamp:
    """A request time (ISO 8601; UTC when no zone is given), default now."""
    if value is None:
        return pd.Timestamp.now(tz="UTC")
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError) as error:
        raise RequestError(field, f"expected an ISO 8601 time, got {value!r}") from error
    if pd.isna(stamp):
        raise RequestError(field, f"expected an ISO 8601 time, got {value!r}")
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def no_extra(fields: Mapping[str, Any], allowed: set[str], where: str = "") -> None:
    unknown = sorted(set(fields) - allowed)
    if unknown:
        raise RequestError(
            f"{where}{unknown[0]}", f"unknown field; expected one of {', '.join(sorted(allowed))}"
        )
