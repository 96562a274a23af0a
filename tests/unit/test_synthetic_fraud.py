"""Synthetic card-fraud world: determinism, schema, label timing and the fraud signals.

At default sizes (10,000 transactions a day for 7 days, ~700 fraud rows) the asserted gaps are
many standard errors wide; they check that each advertised signal exists, not exact values.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from assets.raw.synthetic.fraud import FraudWorld
from configs.schema.source import FraudGeneratorParams
from tests.conftest import assert_plain_strings

START = date(2024, 5, 1)
DAYS = 7
SEED = 11
EVENT_DTYPES = {
    "transaction_id": "int64",
    "card_id": "int64",
    "merchant_id": "int64",
    "event_time": "datetime64[ns]",
    "amount": "float64",
    "mcc": "object",
    "device_id": "int64",
    "country": "object",
    "hour": "int64",
    "channel": "object",
    "is_fraud": "int8",
    "label_time": "datetime64[ns]",
}


def _days(n: int = DAYS) -> list[date]:
    return [START + timedelta(days=i) for i in range(n)]


def _load(world: FraudWorld, n_days: int = DAYS) -> pd.DataFrame:
    frames = [world.events_with_hidden(day).assign(day=i) for i, day in enumerate(_days(n_days))]
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def world() -> FraudWorld:
    return FraudWorld(FraudGeneratorParams(), SEED, START, DAYS)


@pytest.fixture(scope="module")
def events(world: FraudWorld) -> pd.DataFrame:
    frame = _load(world)
    home = world.entity_table("cards").home_country.to_numpy()[frame.card_id]
    return frame.assign(foreign=frame.country.to_numpy() != home)


def _past_hour_count(frame: pd.DataFrame) -> np.ndarray:
    """Same-card transactions in the hour before each row (the velocity feature)."""
    ordered = frame.sort_values(["card_id", "event_time"], kind="stable")
    card = ordered.card_id.to_numpy()
    t = ordered.event_time.to_numpy().astype(np.int64)
    # a composite key keeps each card's times in its own band, so one searchsorted serves all
    span = t.max() - t.min() + 2 * 3600 * 10**9
    key = card * span + (t - t.min())
    count = np.arange(len(key)) - np.searchsorted(key, key - 3600 * 10**9, side="left")
    out = np.empty(len(frame), np.int64)
    out[ordered.index.to_numpy()] = count
    return out


def test_columns_dtypes_and_consistency(world: FraudWorld, events: pd.DataFrame) -> None:
    frame = world.events_for_day(START)
    assert frame.dtypes.astype(str).to_dict() == EVENT_DTYPES
    cards, merchants = world.entity_table("cards"), world.entity_table("merchants")
    assert_plain_strings(frame, cards, merchants)
    assert list(cards.columns) == ["card_id", "home_country", "card_type", "issued_at"]
    assert cards.issued_at.dtype == "datetime64[ns]"
    assert set(cards.card_type) == {"credit", "debit", "prepaid"}
    assert list(merchants.columns) == ["merchant_id", "mcc", "merchant_country"]
    assert {"grocery", "electronics", "gift_cards", "travel"} <= set(merchants.mcc)
    assert (events.mcc.to_numpy() == merchants.mcc.to_numpy()[events.merchant_id]).all()
    assert (events.hour == events.event_time.dt.hour).all()
    assert set(events.channel) == {"online", "pos"}
    assert (events.amount > 0).all()
    assert events.transaction_id.is_unique
    issued = cards.issued_at.to_numpy()[events.card_id]
    assert (issued < events.event_time.to_numpy()).all()


def test_event_times_lie_within_their_day_and_are_sorted(events: pd.DataFrame) -> None:
    for i, day in events.groupby("day"):
        start = pd.Timestamp(START + timedelta(days=int(i)))
        assert day.event_time.min() >= start
        assert day.event_time.max() < start + pd.Timedelta(days=1)
        assert day.event_time.is_monotonic_increasing
        assert day.transaction_id.is_monotonic_increasing


@pytest.mark.parametrize(("fraud_rate", "ring_share"), [(0.01, 0.5), (0.05, 0.2)])
def test_fraud_rate_and_ring_share_follow_params(fraud_rate: float, ring_share: float) -> None:
    params = FraudGeneratorParams(fraud_rate=fraud_rate, ring_share=ring_share)
    frame = _load(FraudWorld(params, SEED, START, DAYS))
    assert frame.is_fraud.mean() == pytest.approx(fraud_rate, rel=0.3)
    fraud = frame[frame.is_fraud == 1]
    assert (fraud.hidden_kind == 1).mean() == pytest.approx(ring_share, abs=0.1)


def test_label_times_follow_delays(events: pd.DataFrame) -> None:
    delay_days = (events.label_time - events.event_time).dt.total_seconds() / 86_400
    fraud = events.is_fraud == 1
    assert (delay_days >= 0).all()
    assert delay_days[fraud].mean() == pytest.approx(7.0, rel=0.25)
    assert delay_days[fraud].std() > 1.0  # a spread of delays, not a constant
    assert np.allclose(delay_days[~fraud], 3.0)


def test_label_delay_mean_tracks_param() -> None:
    params = FraudGeneratorParams(chargeback_delay_mean_days=20.0, fraud_rate=0.05)
    frame = _load(FraudWorld(params, SEED, START, 3), 3)
    fraud = frame[frame.is_fraud == 1]
    delay = (fraud.label_time - fraud.event_time).dt.total_seconds() / 86_400
    assert delay.mean() == pytest.approx(20.0, rel=0.25)


def test_fraud_has_higher_velocity(events: pd.DataFrame) -> None:
    velocity = pd.Series(_past_hour_count(events)).groupby(events.is_fraud).mean()
    assert velocity[1] > 3 * velocity[0]


def test_fraud_is_foreign_large_risky_and_nocturnal(events: pd.DataFrame) -> None:
    fraud, legit = events[events.is_fraud == 1], events[events.is_fraud == 0]
    assert fraud.foreign.mean() > 5 * legit.foreign.mean()
    assert fraud.amount.median() > 2.5 * legit.amount.median()
    risky = ["electronics", "gift_cards", "online_retail", "travel"]
    assert fraud.mcc.isin(risky).mean() > 2 * legit.mcc.isin(risky).mean()
    assert (fraud.hour < 6).mean() > 3 * (legit.hour < 6).mean()


def test_fraud_uses_new_devices(events: pd.DataFrame) -> None:
    ordered = events.sort_values("event_time", kind="stable")
    first_use = ~ordered.duplicated(["card_id", "device_id"])
    novelty = first_use.groupby(ordered.is_fraud).mean()
    assert novelty[1] > 2.5 * novelty[0]
    # ring devices are shared by several cards; legitimate devices belong to one card
    cards_per_device = ordered.groupby("device_id").card_id.nunique()
    shared = ordered.device_id.map(cards_per_device) > 1
    assert shared[ordered.hidden_kind == 1].mean() > 0.9
    assert shared[ordered.is_fraud == 0].mean() < 0.01
