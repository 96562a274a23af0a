"""The contract every synthetic world keeps: seeded, order-independent, bounded in time."""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd
import pytest

from assets.raw.synthetic import build_world
from configs.schema.source import (
    FeedGeneratorParams,
    FraudGeneratorParams,
    SearchGeneratorParams,
)

START = date(2024, 7, 1)
DAYS = 4
SEED = 5
PARAMS = [FeedGeneratorParams(), FraudGeneratorParams(), SearchGeneratorParams()]


@pytest.fixture(params=PARAMS, ids=lambda p: p.generator)
def params(request):
    return request.param


def test_same_seed_is_identical_and_other_seed_differs(params) -> None:
    world, again = (build_world(params, SEED, START, DAYS) for _ in range(2))
    other = build_world(params, SEED + 1, START, DAYS)
    day = START + timedelta(days=2)
    pd.testing.assert_frame_equal(world.events_for_day(day), again.events_for_day(day))
    for name in world.entity_tables:
        pd.testing.assert_frame_equal(world.entity_table(name), again.entity_table(name))
        assert not world.entity_table(name).equals(other.entity_table(name))
    assert not world.events_for_day(day).equals(other.events_for_day(day))


def test_days_do_not_depend_on_generation_order(params) -> None:
    days = [START + timedelta(days=i) for i in range(DAYS)]
    forwards = build_world(params, SEED, START, DAYS)
    backwards = build_world(params, SEED, START, DAYS)
    later_first = {day: backwards.events_for_day(day) for day in reversed(days)}
    for day in days:
        pd.testing.assert_frame_equal(later_first[day], forwards.events_for_day(day))


def test_days_outside_the_range_and_unknown_tables_are_rejected(params) -> None:
    world = build_world(params, SEED, START, DAYS)
    for day in (START - timedelta(days=1), START + timedelta(days=DAYS)):
        with pytest.raises(ValueError, match="outside the generated range"):
            world.events_for_day(day)
    with pytest.raises(ValueError, match="unknown entity table"):
        world.entity_table("events")
