"""A/B assignment: which experiment arm serves a unit (a user, a card, a query).

Assignment is a pure function of (salt, unit id): SHA-256 of ``"<salt>:<unit>"`` read as a
number in [0, 1) and placed on the arms' cumulative weights. No state, so every replica and
every later request puts the same unit in the same arm (sticky), and changing the salt
reshuffles units independently of any earlier experiment.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

_SCALE = float(2**64)


@dataclass(frozen=True)
class Arm:
    """One arm of an experiment: its name, its share of traffic and the model versions it serves."""

    name: str
    weight: float
    versions: dict[str, str]  # model name -> registry version


def bucket(salt: str, unit: Hashable) -> float:
    """A uniform number in [0, 1) fixed by ``salt`` and the unit's id."""
    digest = hashlib.sha256(f"{salt}:{unit}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def assign(salt: str, unit: Hashable, arms: Sequence[Arm]) -> Arm:
    """The arm of ``unit``: arms take consecutive slices of [0, 1) in order of their weights."""
    if not arms:
        raise ValueError("an experiment needs at least one arm")
    point = bucket(salt, unit) * sum(arm.weight for arm in arms)
    edge = 0.0
    for arm in arms:
        edge += arm.weight
        if point < edge:
            return arm
    return arms[-1]  # float rounding at the very top of the range
