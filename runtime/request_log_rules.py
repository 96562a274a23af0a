"""What makes one request-log row readable: the value-level rules behind ``parse_request_log``.

The request log (:mod:`runtime.request_log`) is read by monitoring and A/B analysis long after it
was written, by this version or an older one, or by hand. A row those readers cannot use is
*unreadable*, for one of these reasons, and is skipped and counted rather than failing the
reader (one such row once stopped the fraud performance asset until it was deleted by hand):

* ``bad_json``: a JSON column is not JSON (truncated text, not UTF-8);
* ``non_finite``: a ``NaN`` / ``Infinity`` token (not JSON, though Python writes it unless told
  not to), a number that overflows a float (``1e400``), or a non-finite ``logged_at``;
* ``int_overflow``: an integer beyond int64 anywhere in the row (a 400-digit
  ``transaction_id``): no events column can hold it, and pandas raises on it;
* ``wrong_type``: a value of the wrong kind (``amount: "abc"`` where the events declare a float,
  a list where an object belongs, a column stored as a blob);
* ``bad_time``: a time that is not an ISO 8601 text in pandas' nanosecond range (1677-2262), or
  a ``logged_at`` outside that range;
* ``missing_field``: a field the reader needs is absent (``scores.probability``).

Types follow the events schema's dtypes, as the service accepts them
(:mod:`serving.requests`): ``int`` is a JSON integer (not a boolean), ``float`` any finite JSON
number, ``string`` a text, ``bool`` a boolean, ``timestamp`` an ISO 8601 text; and for the
readers' own fields ``mapping`` (a JSON object), ``list`` and ``id`` (an integer or a text).
A null is never a wrong type; whether it is missing is the reader's call (:class:`Need`).

The columns themselves: ``logged_at`` finite unix seconds within that range, ``endpoint`` a text,
``unit`` and ``arm`` texts or null, ``feature_misses`` an integer and ``latency_ms`` a finite
number or null (columns an older schema lacked read as null), ``request``, ``model_versions``
and ``response`` JSON objects or null, ``features`` and ``scores`` any JSON (the feed logs a
list of scores, fraud an object). The whole-log step
(:func:`runtime.request_log_frame.parse_request_log`) parses the collected times in one go and
builds the typed frame.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

BAD_JSON, NON_FINITE, INT_OVERFLOW = "bad_json", "non_finite", "int_overflow"
WRONG_TYPE, BAD_TIME, MISSING_FIELD = "wrong_type", "bad_time", "missing_field"
REASONS = (BAD_JSON, NON_FINITE, INT_OVERFLOW, WRONG_TYPE, BAD_TIME, MISSING_FIELD)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
JSON_COLUMNS = ("request", "model_versions", "features", "scores", "response")
_OBJECT_COLUMNS = ("request", "model_versions", "response")  # JSON objects or null
# logged_at in unix seconds that pandas' nanosecond timestamps hold (1677-09-22 .. 2262-04-11)
_SECONDS = (pd.Timestamp.min.timestamp() + 86400, pd.Timestamp.max.timestamp() - 86400)
# times that name the moment of reading, not of serving: meaningless once logged
RELATIVE_TIMES = frozenset({"now", "today", "yesterday", "tomorrow"})


class NotUtf8(bytes):
    """A TEXT value whose bytes are not UTF-8 (SQLite stores what it is given)."""


class Unreadable(ValueError):
    """Why one logged row cannot be read: ``reason`` is one of :data:`REASONS`, ``detail`` names
    the field and what is wrong with it."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _no_constant(token: str) -> Any:
    raise Unreadable(NON_FINITE, f"{token} is not JSON")


def _int64(text: str) -> int:
    """A JSON integer within int64 (the length test first: Python refuses to convert very long
    digit strings at all)."""
    value = int(text) if len(text) <= 20 else None
    if value is None or not INT64_MIN <= value <= INT64_MAX:
        raise Unreadable(INT_OVERFLOW, f"an integer of {len(text.lstrip('-'))} digits")
    return value


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise Unreadable(NON_FINITE, f"{text[:40]} overflows a float")
    return value


# one decoder for every row (json.loads with hooks would build one per call)
_DECODER = json.JSONDecoder(parse_constant=_no_constant, parse_int=_int64, parse_float=_finite)


def strict_json(text: Any, where: str) -> Any:
    """``text`` decoded as strict JSON (None stays None), or :class:`Unreadable`."""
    if text is None:
        return None
    if not isinstance(text, str):
        raise Unreadable(WRONG_TYPE, f"{where}: stored as {type(text).__name__}, not as text")
    try:
        return _DECODER.decode(text)
    except Unreadable as error:
        raise Unreadable(error.reason, f"{where}: {error.detail}") from None
    except (ValueError, RecursionError) as error:
        raise Unreadable(BAD_JSON, f"{where}: {error}") from None


# the exact Python types JSON decodes to (a bool is no int here, as in the service's checks)
_KINDS: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "string": (str,),
    "bool": (bool,),
    "timestamp": (str,),  # and parsed, by request_log_frame.parse_request_log
    "mapping": (dict,),
    "list": (list,),
    "id": (int, str),
}
KINDS = tuple(_KINDS)


def check_kind(value: Any, kind: str, where: str) -> None:
    """Raise ``wrong_type`` unless ``value`` (decoded JSON, not None) is of ``kind`` (one of
    :data:`KINDS`)."""
    if type(value) not in _KINDS[kind]:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise Unreadable(
            WRONG_TYPE, f"{where}: expected {kind}, got {type(value).__name__} {shown}"
        )


@dataclass(frozen=True)
class Need:
    """A field a reader uses in the rows of its endpoint.

    ``path`` leads into the decoded row (``("scores", "probability")``; ``"*"`` is every item of
    a list, and a list that is absent has no items to check); ``kind`` is one of :data:`KINDS`;
    ``required``: a row without it (or without what leads to it) is ``missing_field``.
    """

    path: tuple[str, ...]
    kind: str
    required: bool = False

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"Need{self.path}: kind {self.kind!r} is not one of {list(KINDS)}")

    def values(self, row: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
        """``(where, value)`` of each non-null value at ``path``; raises when one is missing or
        something on the way is not an object / a list."""
        if "*" not in self.path:  # the usual need, without building every prefix's name
            value: Any = row
            for depth, step in enumerate(self.path):
                if depth:
                    check_kind(value, "mapping", ".".join(self.path[:depth]))
                value = value.get(step)
                if value is None:
                    if self.required:
                        where = ".".join(self.path[: depth + 1])
                        raise Unreadable(MISSING_FIELD, f"{where}: absent")
                    return
            yield ".".join(self.path), value
            return
        found: list[tuple[str, Any]] = [(self.path[0], row.get(self.path[0]))]
        for step in self.path[1:]:
            deeper: list[tuple[str, Any]] = []
            for where, value in found:
                if value is None:
                    if self.required and step != "*":
                        raise Unreadable(MISSING_FIELD, f"{where}.{step}: absent")
                elif step == "*":
                    check_kind(value, "list", where)
                    deeper += [(f"{where}[{i}]", item) for i, item in enumerate(value)]
                else:
                    check_kind(value, "mapping", where)
                    deeper.append((f"{where}.{step}", value.get(step)))
            found = deeper
        for where, value in found:
            if value is not None:
                yield where, value
            elif self.required:
                raise Unreadable(MISSING_FIELD, f"{where}: absent")


def request_field(request: Any, key: str) -> Any:
    """``request[key]``, or the first nested object's ``key`` (``{"transaction": {...}}``); None
    when absent. How every reader finds an events column in a logged request."""
    if not isinstance(request, Mapping):
        return None
    if key in request:
        return request[key]
    for value in request.values():
        if isinstance(value, Mapping) and key in value:
            return value[key]
    return None


def request_values(request: Any) -> Iterator[tuple[str, str, Any]]:
    """``(where, key, value)`` of every field of a decoded request at its top level and one
    object down: everywhere :func:`request_field` may look."""
    if type(request) is not dict:
        return
    for key, value in request.items():
        yield f"request.{key}", key, value
        if type(value) is dict:
            for inner, item in value.items():
                yield f"request.{key}.{inner}", inner, item


def _number(value: Any, where: str) -> float | None:
    """A REAL column's value (None stays None)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Unreadable(WRONG_TYPE, f"{where}: expected a number, got {value!r:.40}")
    if not math.isfinite(value):
        raise Unreadable(NON_FINITE, f"{where}: {value}")
    return float(value)


def _logged_at(value: Any) -> float:
    if value is None:
        raise Unreadable(MISSING_FIELD, "logged_at: absent")
    if isinstance(value, str | bytes):
        raise Unreadable(BAD_TIME, f"logged_at: {value!r:.40} is not unix seconds")
    seconds = _number(value, "logged_at")
    if not _SECONDS[0] < seconds < _SECONDS[1]:
        raise Unreadable(BAD_TIME, f"logged_at: {value} s is outside 1677-2262")
    return seconds


def _label(value: Any, where: str, required: bool = False) -> str | None:
    """A TEXT column's value: text, or None unless required."""
    if value is None and required:
        raise Unreadable(MISSING_FIELD, f"{where}: absent")
    if value is not None and (isinstance(value, bytes) or not isinstance(value, str)):
        raise Unreadable(WRONG_TYPE, f"{where}: expected text, got {type(value).__name__}")
    return value


def decode_row(raw: Mapping[str, Any]) -> dict[str, Any]:
    """One raw row with every column checked and the JSON columns decoded."""
    misses = raw.get("feature_misses")
    if isinstance(misses, float) and misses.is_integer():  # a frame's int column with nulls
        misses = int(misses)
    if misses is not None and (isinstance(misses, bool) or not isinstance(misses, int)):
        raise Unreadable(WRONG_TYPE, f"feature_misses: expected an integer, got {misses!r:.40}")
    row = {
        "id": raw["id"],
        "logged_at": _logged_at(raw.get("logged_at")),
        "endpoint": _label(raw.get("endpoint"), "endpoint", required=True),
        "unit": _label(raw.get("unit"), "unit"),
        "arm": _label(raw.get("arm"), "arm"),
        "feature_misses": misses,
        "latency_ms": _number(raw.get("latency_ms"), "latency_ms"),
    }
    for column in JSON_COLUMNS:
        text = raw.get(column)
        if isinstance(text, NotUtf8):
            raise Unreadable(BAD_JSON, f"{column}: not UTF-8 text")
        row[column] = value = strict_json(text, column)
        if column in _OBJECT_COLUMNS and value is not None:
            check_kind(value, "mapping", column)
    return row


def _typed_field(value: Any, kind: str | None, where: str, times: list[str]) -> None:
    """Check one request field against its declared kind (none: not declared); keep its time."""
    if kind is None or value is None:
        return
    if type(value) not in _KINDS[kind]:
        check_kind(value, kind, where)  # raises, naming the field
    if kind == "timestamp":
        times.append(value)


def row_times(
    row: Mapping[str, Any], types: Mapping[str, str], needs: Sequence[Need]
) -> tuple[list[str], bool]:
    """Check ``row``'s typed fields; return the texts that must parse as times (``as_of`` first)
    and whether the request has an ``as_of``. A relative time (``now``) is refused here: it
    meant the moment of serving.

    The request's fields are walked as :func:`request_values` does, inline: this runs for
    every row of every read."""
    request = row["request"]
    as_of = request.get("as_of") if type(request) is dict else None
    times: list[str] = []
    _typed_field(as_of, "timestamp", "request.as_of", times)
    if types and type(request) is dict:
        for key, value in request.items():
            if key in types:
                _typed_field(value, types[key], f"request.{key}", times)
            if type(value) is dict:
                for inner, item in value.items():
                    if inner in types:
                        _typed_field(item, types[inner], f"request.{key}.{inner}", times)
    for need in needs:
        for where, value in need.values(row):
            _typed_field(value, need.kind, where, times)
    for text in times:
        if text.strip().lower() in RELATIVE_TIMES:
            raise Unreadable(BAD_TIME, f"{text!r} names the moment of reading, not of serving")
    return times, as_of is not None
