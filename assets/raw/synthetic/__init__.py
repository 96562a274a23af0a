"""Seeded synthetic worlds (feed, fraud, search) that stand in for real raw logs.

``build_world`` picks the world class from ``params.generator``; every world exposes its public
entity tables and one day of events at a time (see ``base.SyntheticWorld``).
"""

from __future__ import annotations

from datetime import date

from assets.raw.synthetic.base import SyntheticWorld
from assets.raw.synthetic.feed import FeedWorld
from assets.raw.synthetic.fraud import FraudWorld
from assets.raw.synthetic.moderation import ModerationWorld
from assets.raw.synthetic.pricing import PricingWorld
from assets.raw.synthetic.search import SearchWorld
from configs.schema.source import (
    FeedGeneratorParams,
    FraudGeneratorParams,
    SearchGeneratorParams,
)

GENERATORS: dict[str, type[SyntheticWorld]] = {
    "feed": FeedWorld,
    "fraud": FraudWorld,
    "moderation": ModerationWorld,
    "pricing": PricingWorld,
    "search": SearchWorld,
}


def build_world(
    params: FeedGeneratorParams | FraudGeneratorParams | SearchGeneratorParams,
    seed: int,
    start_date: date,
    days: int,
) -> SyntheticWorld:
    """Build the world named by ``params.generator`` (deterministic in all four arguments)."""
    try:
        world_class = GENERATORS[params.generator]
    except KeyError:
        raise ValueError(
            f"unknown synthetic generator {params.generator!r}; expected one of {sorted(GENERATORS)}"
        ) from None
    return world_class(params, seed, start_date, days)


__all__ = [
    "GENERATORS",
    "FeedWorld",
    "FraudWorld",
    "ModerationWorld",
    "PricingWorld",
    "SearchWorld",
    "SyntheticWorld",
    "build_world",
]
