"""Windowed aggregates against a brute-force oracle evaluated at arbitrary moments."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from assets.features.aggregates import EVENT_TIMESTAMP, compute_aggregates, plan_aggregates
from configs.schema.base import parse_duration
from configs.schema.stages import FeatureViewSpec

VIEW = FeatureViewSpec(
    entities=["user"],
    ttl="30d",
    aggregates=[
        {"agg": "count", "windows": ["1h", "1d"]},
        {"column": "amount", "agg": "sum", "windows": ["1h"]},
        {"column": "amount", "agg": "mean", "windows": ["1d"]},
        {"column": "amount", "agg": "max", "windows": ["1d"]},
        {"column": "merchant", "agg": "distinct_count", "windows": ["1d"]},
        {"agg": "time_since_last", "windows": ["1d"]},
        {"column": "merchant", "agg": "last_n", "n": 3, "windows": ["1d"]},
        {"column": "fraud", "agg": "sum", "windows": ["7d"]},
    ],
    ratios=[
        {
            "name": "amount_per_event_1d",
            "numerator": "amount_max_1d",
            "denominator": "events_count_1d",
        }
    ],
)


def _events(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 400
    start = pd.Timestamp("2025-01-01")
    minutes = np.sort(rng.integers(0, 3 * 24 * 60, n))
    minutes[10:14] = minutes[10]  # same-time events for one user below
    users = rng.integers(0, 6, n)
    users[10:14] = users[10]
    times = start + pd.to_timedelta(minutes, "min")
    return pd.DataFrame(
        {
            "user_id": users,
            "event_time": times,
            "amount": rng.gamma(2.0, 20.0, n).round(2),
            "merchant": rng.integers(0, 8, n),
            "fraud": (rng.random(n) < 0.2).astype(int),
            # the fraud label becomes known 0-3 days later
            "label_time": times + pd.to_timedelta(rng.integers(0, 3 * 24 * 60, n), "min"),
        }
    )


def _oracle(events: pd.DataFrame, user: int, at: pd.Timestamp) -> dict[str, object]:
    def window(w: str, axis: str = "event_time") -> pd.DataFrame:
        rows = events[events.user_id == user]
        return rows[(rows[axis] >= at - parse_duration(w)) & (rows[axis] <= at)].sort_values(
            [axis, "merchant"]
        )

    day, hour = window("1d"), window("1h")
    return {
        "events_count_1h": len(hour),
        "events_count_1d": len(day),
        "amount_sum_1h": hour.amount.sum(),  # an empty window sums to 0
        "amount_mean_1d": day.amount.mean() if len(day) else np.nan,
        "amount_max_1d": day.amount.max() if len(day) else np.nan,
        "merchant_distinct_count_1d": day.merchant.nunique(),
        "last_event_at_1d": day.event_time.max() if len(day) else pd.NaT,
        "merchant_last3_1d": day.merchant.tolist()[-3:],
        "fraud_sum_7d": window("7d", "label_time").fraud.sum(),
    }


def _as_of(table: pd.DataFrame, user: int, at: pd.Timestamp) -> pd.Series | None:
    rows = table[(table.user_id == user) & (table[EVENT_TIMESTAMP] <= at)]
    return rows.iloc[-1] if len(rows) else None


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_as_of_lookup_equals_oracle_at_any_moment(seed: int) -> None:
    events = _events(seed)
    plans = plan_aggregates(VIEW, {"fraud": "label_time"}, "event_time")
    table = compute_aggregates(
        events,
        ["user_id"],
        plans,
        pd.Timestamp("2025-02-01"),
        [("amount_per_event_1d", "amount_max_1d", "events_count_1d")],
    )
    rng = np.random.default_rng(seed + 100)
    moments = list(events.event_time.sample(40, random_state=seed)) + list(
        pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.integers(0, 6 * 24 * 3600, 80), "s")
    )
    # exactly at expiry: an event is in its window at t + 1h and out 1µs later
    first = events.iloc[0]
    moments += [
        first.event_time + pd.Timedelta("1h"),
        first.event_time + pd.Timedelta("1h") + pd.Timedelta(1, "us"),
    ]
    checked = 0
    for at in moments:
        for user in range(6):
            expected = _oracle(events, user, at)
            row = _as_of(table, user, at)
            if row is None:  # no history yet: nothing to look up, and nothing to count
                assert expected["events_count_1d"] == 0 and expected["fraud_sum_7d"] == 0
                continue
            for name, value in expected.items():
                got = row[name]
                if name == "merchant_last3_1d":
                    assert list(got) == value, (at, user, name)
                elif isinstance(value, pd.Timestamp) or value is pd.NaT:
                    assert (pd.isna(got) and pd.isna(value)) or got == value, (at, user, name)
                elif pd.isna(value):
                    assert pd.isna(got), (at, user, name, got)
                else:
                    assert got == pytest.approx(value), (at, user, name)
            ratio = row["amount_per_event_1d"]
            if expected["events_count_1d"]:
                assert ratio == pytest.approx(
                    expected["amount_max_1d"] / expected["events_count_1d"]
                )
            else:
                assert pd.isna(ratio)
            checked += 1
    assert checked > 300


def test_one_row_per_entity_and_change_point() -> None:
    events = _events(0)
    table = compute_aggregates(
        events, ["user_id"], plan_aggregates(VIEW, {}, "event_time"), pd.Timestamp("2025-02-01")
    )
    assert not table.duplicated(["user_id", EVENT_TIMESTAMP]).any()
    assert table.created_timestamp.eq(pd.Timestamp("2025-02-01")).all()
    # after the last event of a user, its 1h count falls back to zero at expiry
    last = events[events.user_id == 0].event_time.max()
    after = _as_of(table, 0, last + pd.Timedelta("2h"))
    assert after["events_count_1h"] == 0 and after["events_count_1d"] > 0


def test_nothing_is_stamped_after_the_end_of_the_data() -> None:
    events = _events(0)
    plans = plan_aggregates(VIEW, {"fraud": "label_time"}, "event_time")
    created = pd.Timestamp("2025-02-01")
    full = compute_aggregates(events, ["user_id"], plans, created)
    until = events.event_time.quantile(0.7).floor("us")
    cut = compute_aggregates(events, ["user_id"], plans, created, until=until)
    assert cut[EVENT_TIMESTAMP].max() <= until
    before = full[full[EVENT_TIMESTAMP] <= until].reset_index(drop=True)
    pd.testing.assert_frame_equal(cut, before)


def test_chunks_of_whole_entities_give_the_same_table(monkeypatch: pytest.MonkeyPatch) -> None:
    import assets.features.aggregates as aggregates

    events = _events(1)
    plans = plan_aggregates(VIEW, {"fraud": "label_time"}, "event_time")
    created = pd.Timestamp("2025-02-01")
    whole = compute_aggregates(events, ["user_id"], plans, created)
    monkeypatch.setattr(aggregates, "CHUNK_EVENTS", len(events) // 4)
    chunked = compute_aggregates(events, ["user_id"], plans, created)
    order = ["user_id", EVENT_TIMESTAMP]
    pd.testing.assert_frame_equal(
        whole.sort_values(order, ignore_index=True), chunked.sort_values(order, ignore_index=True)
    )
