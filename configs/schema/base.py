"""Shared pydantic base for every section of a use-case spec.

Every model forbids unknown keys, so a typo in YAML is an error (with a did-you-mean added by
``configs.schema.loading``) rather than a silently ignored setting.
"""

from __future__ import annotations

import re
from datetime import timedelta

from pydantic import BaseModel, ConfigDict

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class StrictModel(BaseModel):
    """Base of all spec models: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


def parse_duration(text: str) -> timedelta:
    """Parse a compact duration such as ``30m``, ``1h``, ``7d`` or ``2w``.

    Windows, TTLs, gaps and label delays are all written this way in YAML so one rule covers them.
    """
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(
            f"expected a duration like '30m', '1h', '7d' or '2w' (number + unit s/m/h/d/w), got {text!r}"
        )
    value, unit = match.groups()
    return timedelta(seconds=float(value) * _UNIT_SECONDS[unit])


def duration_text(duration: timedelta) -> str:
    """``duration`` written back in the YAML's notation, in its largest whole unit (31d, 25h, 65m, 90s)."""
    seconds = int(duration.total_seconds())
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
