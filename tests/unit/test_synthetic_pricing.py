"""The synthetic delivery world (issue 16): seeded like every world, and its known structure
holds: noise of the stated sigma around the documented sum, the load counted as described,
the target known at delivery."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from assets.raw.synthetic import build_world
from assets.raw.synthetic.pricing import WEEKDAY_MINUTES, PricingWorld, store_load
from configs.schema.source import FraudGeneratorParams, PricingGeneratorParams

START = date(2025, 3, 3)  # a Monday
PARAMS = PricingGeneratorParams(n_stores=20, orders_per_day=2000, noise_sigma=3.0)


@pytest.fixture(scope="module")
def world() -> PricingWorld:
    return build_world(PARAMS, 4, START, 7)


def test_seeded_and_order_independent(world) -> None:
    again = build_world(PARAMS, 4, START, 7)
    days = [START + timedelta(days=i) for i in range(7)]
    backwards = {day: again.events_for_day(day) for day in reversed(days)}
    for day in days:
        pd.testing.assert_frame_equal(backwards[day], world.events_for_day(day))
    pd.testing.assert_frame_equal(world.entity_table("stores"), again.entity_table("stores"))
    other = build_world(PARAMS, 5, START, 7)
    assert not other.events_for_day(START).equals(world.events_for_day(START))
    with pytest.raises(TypeError, match="PricingGeneratorParams"):
        PricingWorld(FraudGeneratorParams(), 4, START, 7)


def test_noise_has_the_stated_sigma_around_the_documented_sum(world) -> None:
    days = [world.events_with_hidden(START + timedelta(days=i)) for i in range(7)]
    events = pd.concat(days, ignore_index=True)
    residual = events["delivery_seconds"] - events["hidden_expected_seconds"]
    assert world.noise_floor_seconds() == 180.0
    assert abs(residual.std() - 180.0) < 0.03 * 180.0  # ~14,000 rows
    assert abs(residual.mean()) < 5.0
    # the sum itself, recomputed from the public columns and the hidden load
    saturday = days[5]
    expected = world.expected_minutes(
        saturday["store_id"].to_numpy(),
        saturday["distance_km"].to_numpy(),
        saturday["items"].to_numpy(),
        5,
        saturday["hour"].to_numpy(),
        saturday["hidden_load"].to_numpy(),
    )
    np.testing.assert_allclose(expected * 60, saturday["hidden_expected_seconds"])
    assert (saturday["weekday"] == 5).all() and WEEKDAY_MINUTES[5] > WEEKDAY_MINUTES[0]


def test_target_is_known_at_delivery_and_orders_only_in_opening_hours(world) -> None:
    events = world.events_for_day(START + timedelta(days=2))
    took = (events["delivered_at"] - events["event_time"]).dt.total_seconds()
    np.testing.assert_array_equal(took.to_numpy(), events["delivery_seconds"].to_numpy())
    assert events["event_time"].dt.hour.min() >= 10 and (events["hour"] >= 10).all()
    assert (events["event_time"].dt.hour == events["hour"]).all()
    assert events["order_id"].is_unique and events["event_time"].is_monotonic_increasing


def test_load_is_the_stores_orders_in_the_hour_before(world) -> None:
    events = world.events_with_hidden(START + timedelta(days=4))
    times, stores = events["event_time"], events["store_id"]
    brute = [
        int(((stores == s) & (times < t) & (times > t - pd.Timedelta("1h"))).sum())
        for s, t in zip(stores[:300], times[:300], strict=True)
    ]
    assert events["hidden_load"][:300].tolist() == brute
    assert max(brute) > 0
    ns = np.array([0, 10, 20, 3_600_000_000_000 + 5], dtype=np.int64) + 10 * 3_600 * 10**9
    # the last order is 1h + 5 ns after the first: the first is out of its hour, the second in
    assert store_load(np.array([1, 1, 2, 1]), ns).tolist() == [0, 1, 0, 1]
