"""Synthetic feed world: determinism, schema, and the statistical story it promises.

Tolerances are several standard errors wide at these sizes (5 days x 2000 slates of 10), so the
tests check real properties of the generator rather than one lucky seed.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from assets.raw.synthetic import GENERATORS, build_world
from assets.raw.synthetic.feed import FeedWorld
from configs.schema.source import FeedGeneratorParams, FraudGeneratorParams, SearchGeneratorParams
from tests.conftest import assert_plain_strings

START = date(2024, 3, 1)
DAYS = 5
SEED = 7
EVENT_DTYPES = {
    "request_id": "int64",
    "user_id": "int64",
    "item_id": "int64",
    "position": "int64",
    "device": "object",
    "event_time": "datetime64[ns]",
    "clicked": "int8",
    "purchased": "int8",
}


def _days(n: int = DAYS) -> list[date]:
    return [START + timedelta(days=i) for i in range(n)]


@pytest.fixture(scope="module")
def world() -> FeedWorld:
    return FeedWorld(FeedGeneratorParams(), SEED, START, DAYS)


@pytest.fixture(scope="module")
def events(world: FeedWorld) -> pd.DataFrame:
    frames = [world.events_with_hidden(day).assign(day=i) for i, day in enumerate(_days())]
    return pd.concat(frames, ignore_index=True)


def test_registry_builds_each_world_from_its_params() -> None:
    assert set(GENERATORS) == {"feed", "fraud", "moderation", "pricing", "search"}
    for params in (FeedGeneratorParams(), FraudGeneratorParams(), SearchGeneratorParams()):
        built = build_world(params, 0, START, 2)
        assert isinstance(built, GENERATORS[params.generator])
        assert (
            set(built.entity_tables)
            == {
                "feed": {"users", "items"},
                "fraud": {"cards", "merchants"},
                "search": {"queries", "documents"},
            }[params.generator]
        )


def test_columns_and_dtypes(world: FeedWorld) -> None:
    frame = world.events_for_day(START)
    assert frame.dtypes.astype(str).to_dict() == EVENT_DTYPES
    assert set(frame.device) <= {"mobile", "desktop", "tablet"}
    users, items = world.entity_table("users"), world.entity_table("items")
    assert_plain_strings(frame, users, items)
    assert users.dtypes.astype(str).to_dict() == {
        "user_id": "int64",
        "signup_time": "datetime64[ns]",
        "country": "object",
        "age_bucket": "object",
    }
    assert items.dtypes.astype(str).to_dict() == {
        "item_id": "int64",
        "category": "object",
        "brand": "object",
        "price": "float64",
        "created_at": "datetime64[ns]",
    }
    assert set(users.age_bucket) <= {"18-24", "25-34", "35-44", "45-54", "55+"}
    assert 4 <= users.country.nunique() <= 8 and isinstance(users.country.iloc[0], str)
    assert items.category.str.fullmatch(r"cat_\d\d").all()
    assert items.brand.str.fullmatch(r"brand_\d{3}").all()
    assert (items.price > 0).all()
    # prices depend on the category: between-category spread of median log price is real
    assert items.groupby("category").price.median().pipe(np.log).std() > 0.3


def test_event_times_lie_within_their_day_and_are_sorted(events: pd.DataFrame) -> None:
    for i, day in events.groupby("day"):
        start = pd.Timestamp(START + timedelta(days=int(i)))
        assert day.event_time.min() >= start
        assert day.event_time.max() < start + pd.Timedelta(days=1)
        assert day.event_time.is_monotonic_increasing


def test_slates_are_well_formed(events: pd.DataFrame) -> None:
    per_request = events.groupby("request_id")
    assert (per_request.size() == 10).mean() > 0.99
    assert not events.duplicated(["request_id", "item_id"]).any()
    assert (per_request.position.min() == 0).all()
    assert (per_request.user_id.nunique() == 1).all()
    assert (per_request.event_time.nunique() == 1).all()


def test_users_and_items_exist_before_their_impressions(
    world: FeedWorld, events: pd.DataFrame
) -> None:
    users, items = world.entity_table("users"), world.entity_table("items")
    signup = users.signup_time.to_numpy()[events.user_id]
    created = items.created_at.to_numpy()[events.item_id]
    assert (signup < events.event_time.to_numpy()).all()
    assert (created < events.event_time.to_numpy()).all()


def test_new_users_and_items_arrive_over_time(world: FeedWorld, events: pd.DataFrame) -> None:
    users, items = world.entity_table("users"), world.entity_table("items")
    start = pd.Timestamp(START)
    assert (users.signup_time >= start).mean() == pytest.approx(0.3, abs=0.01)
    assert (items.created_at >= start).mean() == pytest.approx(0.3, abs=0.01)
    late_items = items.created_at.to_numpy()[events.item_id] >= start
    late_users = users.signup_time.to_numpy()[events.user_id] >= start
    share_items = pd.Series(late_items).groupby(events.day).mean()
    share_users = pd.Series(late_users).groupby(events.day).mean()
    assert share_items.is_monotonic_increasing and share_items.iloc[-1] > 0.1
    assert share_users.is_monotonic_increasing and share_users.iloc[-1] > 0.05


def test_ctr_and_purchase_rate_are_in_band(events: pd.DataFrame) -> None:
    assert 0.03 <= events.clicked.mean() <= 0.10
    clicked = events[events.clicked == 1]
    assert 0.05 <= clicked.purchased.mean() <= 0.20
    assert (events.purchased <= events.clicked).all()


def test_position_bias_matches_eta(events: pd.DataFrame) -> None:
    by_position = events.groupby("position")
    ctr = by_position.clicked.mean()
    assert ctr.iloc[0] > 3 * ctr.iloc[5]
    assert (ctr.diff().iloc[1:6] < 0).all()
    # dividing out the (hidden) attractiveness of what was shown leaves P(examine | position)
    examined = by_position.clicked.sum() / by_position.hidden_attract_prob.sum()
    assert examined.iloc[0] / examined.iloc[5] == pytest.approx(6.0, rel=0.25)


def test_no_position_bias_when_eta_is_zero() -> None:
    flat = FeedWorld(FeedGeneratorParams(position_bias=0.0), SEED, START, 2)
    frame = pd.concat([flat.events_with_hidden(day) for day in _days(2)])
    by_position = frame.groupby("position")
    examined = by_position.clicked.sum() / by_position.hidden_attract_prob.sum()
    assert examined.iloc[0] / examined.iloc[5] == pytest.approx(1.0, rel=0.2)


def test_clicks_follow_hidden_affinity(events: pd.DataFrame) -> None:
    clicked = events.clicked == 1
    gap = events.hidden_affinity[clicked].mean() - events.hidden_affinity[~clicked].mean()
    assert gap > 0.7 * events.hidden_affinity.std()


def test_clicks_concentrate_on_categories_clicked_before(
    world: FeedWorld, events: pd.DataFrame
) -> None:
    category = world.entity_table("items").category.to_numpy()
    frame = events.assign(category=category[events.item_id])
    history = frame[(frame.day < 3) & (frame.clicked == 1)][["user_id", "category"]]
    seen = set(zip(history.user_id, history.category, strict=True))
    later = frame[(frame.day >= 3) & frame.user_id.isin(history.user_id)]
    repeat = np.array([pair in seen for pair in zip(later.user_id, later.category, strict=True)])
    ctr_repeat = later.clicked[repeat].mean()
    ctr_other = later.clicked[~repeat].mean()
    assert ctr_repeat > 2.0 * ctr_other
