"""The expression language of request-time features: a fixed set of named transforms, no code.

A request-time feature is computed from the event row itself (the transaction's ``amount``, its
``event_time``) and the features joined to it (``card_velocity__amount_mean_30d``), at training
time after the point-in-time join and at serving time from the request and the online store.
The YAML says what to compute with one of these forms::

    amount                                  the events column as it is (a request field)
    log1p(amount)                           log(1 + x)
    hour_of_day(event_time)                 0..23, in UTC unless a zone is given:
    hour_of_day(event_time, "Europe/Paris")   the local hour there
    day_of_week(event_time)                 0 = Monday .. 6 = Sunday
    is_weekend(event_time)                  1 on Saturday and Sunday, else 0
    is_night(event_time)                    1 from 00:00 to 05:59, else 0
    ratio(amount, card_velocity__amount_mean_30d)            a / b
    differs(country, card_velocity_attributes__home_country)  1 where a != b, else 0

Why a grammar and not Python: the same text is validated here (a typo is a line-numbered error,
never a run that fails an hour later), computed by one implementation
(:mod:`runtime.request_features`) in training, serving and Feast, and it can never run anything
but these transforms. Arguments are column names, and for the time transforms an optional quoted
IANA time zone; nothing nests. Every result is a number (null where the inputs give none, see
each transform), except a passthrough of a string column, which stays a string.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from difflib import get_close_matches
from functools import lru_cache
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator

# What a column holds, as far as a transform is concerned: bool and int are numbers.
Kind = Literal["number", "string", "timestamp"]


@dataclass(frozen=True)
class Transform:
    """One named transform: the kinds of its column arguments and what it gives."""

    name: str
    inputs: tuple[Kind | Literal["any"], ...]
    description: str
    zone: bool = False  # takes an optional quoted time zone after its column
    same_kind: bool = False  # its two columns must hold the same kind (differs)


TRANSFORMS: dict[str, Transform] = {
    t.name: t
    for t in (
        Transform("log1p", ("number",), "log(1 + x); null where x <= -1 or x is null"),
        Transform("hour_of_day", ("timestamp",), "the hour 0..23 (UTC by default)", zone=True),
        Transform(
            "day_of_week", ("timestamp",), "0 = Monday .. 6 = Sunday (UTC by default)", zone=True
        ),
        Transform("is_weekend", ("timestamp",), "1 on Saturday and Sunday, else 0", zone=True),
        Transform("is_night", ("timestamp",), "1 from 00:00 to 05:59, else 0", zone=True),
        Transform("ratio", ("number", "number"), "a / b; null where b is 0 or either is null"),
        Transform(
            "differs",
            ("any", "any"),
            "1 where a != b, 0 where equal, null where either is null",
            same_kind=True,
        ),
    )
}
PASSTHROUGH = "passthrough"  # the transform name of a bare column, for messages

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FEATURE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,62}$")
_CALL = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*\((.*)\)\s*$", re.DOTALL)
_QUOTED = re.compile(r"""^(?:"([^"\\]*)"|'([^'\\]*)')$""")
MAX_EXPRESSION_CHARS = 300


@dataclass(frozen=True)
class RequestExpression:
    """A parsed expression: ``transform`` (None for a bare column), its ``columns`` in order
    and, for a time transform, the ``zone`` its clock reads (None: UTC)."""

    text: str
    transform: str | None
    columns: tuple[str, ...]
    zone: str | None = None

    @property
    def shown(self) -> str:
        """The transform's name in messages: ``passthrough`` for a bare column."""
        return self.transform or PASSTHROUGH


def _split_arguments(text: str) -> list[str]:
    """``a, b`` -> ["a", "b"]; commas inside quotes do not split (none are valid there, but the
    message should then be about the zone, not about a count of arguments)."""
    parts, current, quote = [], [], ""
    for char in text:
        if quote:
            current.append(char)
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
            current.append(char)
        elif char == ",":
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    parts.append("".join(current).strip())
    return parts


def _zone(text: str, transform: str) -> str:
    quoted = _QUOTED.match(text)
    if quoted is None:
        raise ValueError(
            f"{transform}: the second argument is a time zone in quotes, e.g."
            f' {transform}(event_time, "Europe/Paris"), got {text!r}'
        )
    zone = quoted.group(1) if quoted.group(1) is not None else quoted.group(2)
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{transform}: unknown time zone {zone!r}; expected an IANA name such as 'UTC',"
            " 'Europe/Paris' or 'America/New_York'"
        ) from None
    return zone


@lru_cache(maxsize=1024)
def parse_expression(text: str) -> RequestExpression:
    """``text`` parsed, or ``ValueError`` saying what is wrong and what is allowed.

    Only the grammar is checked here; whether the columns exist and hold what the transform
    takes needs the rest of the YAML (:mod:`configs.schema.request_checks`).
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("expected a column name or a transform such as log1p(amount)")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ValueError(f"expected at most {MAX_EXPRESSION_CHARS} characters, got {len(text)}")
    stripped = text.strip()
    if _NAME.fullmatch(stripped):
        return RequestExpression(stripped, None, (stripped,))
    call = _CALL.match(stripped)
    if call is None:
        raise ValueError(
            f"expected a column name or one transform of columns, e.g. ratio(a, b), got {text!r}"
            f" (transforms: {', '.join(TRANSFORMS)}; nothing nests, no operators)"
        )
    name, inside = call.group(1), call.group(2)
    transform = TRANSFORMS.get(name)
    if transform is None:
        guess = get_close_matches(name, list(TRANSFORMS), n=1)
        hint = f"; did you mean {guess[0]!r}?" if guess else ""
        raise ValueError(f"unknown transform {name!r}{hint} (known: {', '.join(TRANSFORMS)})")
    if "(" in inside or ")" in inside:
        raise ValueError(
            f"{name}: a transform's arguments are column names (and a quoted time zone);"
            " nothing nests"
        )
    arguments = _split_arguments(inside) if inside.strip() else []
    wanted = len(transform.inputs)
    allowed = f"{wanted} or {wanted + 1}" if transform.zone else str(wanted)
    if len(arguments) not in ((wanted, wanted + 1) if transform.zone else (wanted,)):
        shown = f"{len(arguments)}" if arguments else "no argument"
        raise ValueError(
            f"{name} takes {allowed} argument(s) ({transform.description}), got {shown}"
        )
    columns = arguments[:wanted]
    for column in columns:
        if not _NAME.fullmatch(column):
            raise ValueError(
                f"{name}: expected a column name (letters, digits, _), got {column!r}; a"
                " transform's arguments are columns, nothing nests"
            )
    zone = _zone(arguments[wanted], name) if len(arguments) > wanted else None
    return RequestExpression(stripped, name, tuple(columns), zone)


def _checked_expression(text: str) -> str:
    parse_expression(text)
    return text.strip()


def _checked_name(name: str) -> str:
    if not _FEATURE_NAME.match(name) or "__" in name:
        raise ValueError(
            f"a request feature's name is a letter, then letters, digits and single"
            f" underscores (at most 63 characters), got {name!r}"
        )
    return name


# The ``request`` mapping of a feature view: feature name -> expression, both checked.
RequestName = Annotated[str, AfterValidator(_checked_name)]
RequestText = Annotated[str, AfterValidator(_checked_expression)]
