"""The drift switch of the synthetic worlds: it changes only the days from ``from_day`` on.

A pipeline that materialised the early days before drift was turned on must find them unchanged,
and the drifted days must differ in the advertised way (amounts, channel, fraud profile, tastes).
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from assets.raw.synthetic import build_world
from configs.schema.source import (
    FeedDrift,
    FeedGeneratorParams,
    FraudDrift,
    FraudGeneratorParams,
    SyntheticSource,
)

START = date(2024, 3, 1)
DAYS = 4
FROM_DAY = 2
SEED = 7
HIGH_RISK = ["electronics", "gift_cards", "online_retail", "travel"]
FRAUD = FraudGeneratorParams(transactions_per_day=8000, fraud_rate=0.02)
FEED = FeedGeneratorParams(n_users=1500, n_items=800, requests_per_day=3000)


def _day(index: int) -> date:
    return START + timedelta(days=index)


def _fraud_world(**drift: float):
    params = FRAUD.model_copy(update={"drift": FraudDrift(from_day=FROM_DAY, **drift)})
    return build_world(params, SEED, START, DAYS)


@pytest.fixture(scope="module")
def fraud_base():
    return build_world(FRAUD, SEED, START, DAYS)


@pytest.fixture(scope="module")
def feed_base():
    return build_world(FEED, SEED, START, DAYS)


@pytest.fixture(scope="module")
def feed_drifted():
    params = FEED.model_copy(update={"drift": FeedDrift(from_day=FROM_DAY, taste_shift=0.7)})
    return build_world(params, SEED, START, DAYS)


def test_drift_none_is_the_default_and_changes_nothing(fraud_base, feed_base) -> None:
    assert FraudGeneratorParams().drift is None and FeedGeneratorParams().drift is None
    explicit = FRAUD.model_copy(update={"drift": None})
    again = build_world(explicit, SEED, START, DAYS)
    pd.testing.assert_frame_equal(
        again.events_with_hidden(_day(3)), fraud_base.events_with_hidden(_day(3))
    )


@pytest.mark.parametrize(
    "drift", [{"amount_scale": 2.0}, {"channel_shift": -0.5}, {"new_pattern": 0.6}]
)
def test_fraud_days_before_from_day_and_entities_are_unchanged(fraud_base, drift) -> None:
    drifted = _fraud_world(**drift)
    for index in range(FROM_DAY):
        pd.testing.assert_frame_equal(
            drifted.events_with_hidden(_day(index)), fraud_base.events_with_hidden(_day(index))
        )
    for name in fraud_base.entity_tables:
        pd.testing.assert_frame_equal(drifted.entity_table(name), fraud_base.entity_table(name))
    assert not drifted.events_for_day(_day(FROM_DAY)).equals(
        fraud_base.events_for_day(_day(FROM_DAY))
    )


def test_feed_days_before_from_day_and_entities_are_unchanged(feed_base, feed_drifted) -> None:
    for index in range(FROM_DAY):
        pd.testing.assert_frame_equal(
            feed_drifted.events_with_hidden(_day(index)), feed_base.events_with_hidden(_day(index))
        )
    for name in feed_base.entity_tables:
        pd.testing.assert_frame_equal(feed_drifted.entity_table(name), feed_base.entity_table(name))


def test_amount_scale_multiplies_amounts_and_nothing_else(fraud_base) -> None:
    drifted = _fraud_world(amount_scale=1.7)
    for index in range(FROM_DAY, DAYS):
        before, after = fraud_base.events_for_day(_day(index)), drifted.events_for_day(_day(index))
        assert after.amount.mean() / before.amount.mean() == pytest.approx(1.7, rel=0.01)
        np.testing.assert_allclose(after.amount, np.maximum(before.amount * 1.7, 0.5), atol=0.006)
        pd.testing.assert_frame_equal(after.drop(columns="amount"), before.drop(columns="amount"))


def test_channel_shift_moves_legitimate_rows_between_channels(fraud_base) -> None:
    day = _day(FROM_DAY)
    online = (fraud_base.events_for_day(day).channel == "online").mean()
    more = (_fraud_world(channel_shift=0.5).events_for_day(day).channel == "online").mean()
    fewer = (_fraud_world(channel_shift=-0.5).events_for_day(day).channel == "online").mean()
    assert more == pytest.approx(online + 0.5 * (1 - online), abs=0.02)
    assert fewer < online - 0.1


def test_new_pattern_changes_the_profile_of_fraud(fraud_base) -> None:
    drifted = _fraud_world(new_pattern=0.6)
    days = [_day(index) for index in range(FROM_DAY, DAYS)]
    before = pd.concat([fraud_base.events_with_hidden(day) for day in days])
    after = pd.concat([drifted.events_with_hidden(day) for day in days])
    old, new = before[before.is_fraud == 1], after[after.is_fraud == 1]
    # the fraud rate holds; the fraud's face changes
    assert new.is_fraud.sum() == pytest.approx(old.is_fraud.sum(), rel=0.2)
    assert (new.hidden_kind == 3).mean() == pytest.approx(0.6, abs=0.08)
    assert old.mcc.isin(HIGH_RISK).mean() == 1.0
    assert new.mcc.isin(HIGH_RISK).mean() < 0.55
    assert (new.channel == "pos").mean() > (old.channel == "pos").mean() + 0.35
    cloned = new[new.hidden_kind == 3]
    cards = drifted.entity_table("cards").set_index("card_id")
    assert (cloned.country.to_numpy() == cards.home_country[cloned.card_id].to_numpy()).all()
    assert (cloned.device_id < 10**12).all()  # the card's own device, not a new one
    assert cloned.hour.between(6, 23).mean() > 0.9


def _click_share_of(world, categories: list[str], index: int) -> tuple[float, float]:
    events = world.events_for_day(_day(index))
    category = world.entity_table("items").category.to_numpy()[events.item_id.to_numpy()]
    clicked = events.clicked.to_numpy() == 1
    return float(np.isin(category[clicked], categories).mean()), float(clicked.mean())


def test_taste_shift_moves_clicks_to_trending_categories(feed_base, feed_drifted) -> None:
    trending = [f"cat_{k:02d}" for k in feed_drifted.trending_categories]
    assert len(trending) == round(FEED.n_categories / 4)
    assert feed_drifted.drifted_users.mean() == pytest.approx(0.7, abs=0.001)
    for index in range(FROM_DAY, DAYS):
        share_before, ctr_before = _click_share_of(feed_base, trending, index)
        share_after, ctr_after = _click_share_of(feed_drifted, trending, index)
        assert share_after > 1.2 * share_before
        # the stale policy shows items for the old tastes, so fewer of them get clicked
        assert ctr_after < ctr_before
        # impressions come from the same (stale) policy: only clicks follow the new tastes
        shown = feed_drifted.events_for_day(_day(index))
        pd.testing.assert_series_equal(shown.item_id, feed_base.events_for_day(_day(index)).item_id)


@pytest.mark.parametrize(
    ("model", "values", "field"),
    [
        (FraudDrift, {"from_day": 1, "amount_scale": 0}, "amount_scale"),
        (FraudDrift, {"from_day": 1, "channel_shift": 1.5}, "channel_shift"),
        (FraudDrift, {"from_day": 1, "new_pattern": -0.1}, "new_pattern"),
        (FraudDrift, {"from_day": -1, "amount_scale": 2}, "from_day"),
        (FraudDrift, {"from_day": 1}, "amount_scale"),
        (FraudDrift, {"from_day": 1, "amount_scale": 2, "shift": 1}, "shift"),
        (FeedDrift, {"from_day": 1, "taste_shift": 1.2}, "taste_shift"),
        (FeedDrift, {"from_day": 1, "taste_shift": 0}, "taste_shift"),
        (FeedDrift, {"taste_shift": 0.5}, "from_day"),
    ],
)
def test_bad_drift_values_are_rejected_naming_the_field(model, values, field) -> None:
    with pytest.raises(ValidationError, match=field):
        model(**values)


def test_from_day_must_fall_inside_the_generated_days() -> None:
    source = {
        "kind": "synthetic",
        "start_date": "2024-03-01",
        "days": 5,
        "params": {"generator": "fraud", "drift": {"from_day": 5, "amount_scale": 2}},
    }
    with pytest.raises(ValidationError, match=r"drift\.from_day \(5\) must be < days \(5\)"):
        SyntheticSource.model_validate(source)
    source["params"]["drift"]["from_day"] = 4
    assert SyntheticSource.model_validate(source).params.drift.from_day == 4
