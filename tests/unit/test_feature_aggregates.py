"""Windowed aggregates against a brute-force oracle evaluated at arbitrary moments.

Exact windows and hopped ones (a view's ``hop``: Chronon's sawtooth tail) alike: the oracle
rounds the window's tail down with pandas, the table does it in SQL.
"""

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


HOPS = ["exact", "auto", "25m"]


def _view(hop: str) -> FeatureViewSpec:
    return VIEW.model_copy(update={"hop": hop})


def _tail(view: FeatureViewSpec, window: str, at: pd.Timestamp) -> pd.Timestamp:
    """The oldest moment in ``window`` at ``at``: at - window, rounded down to the hop if any."""
    start = at - parse_duration(window)
    hop = view.window_hop(window)
    if hop is None:
        return start
    epoch = pd.Timestamp("1970-01-01")
    return epoch + ((start - epoch) // hop) * hop


def _oracle(
    events: pd.DataFrame, user: int, at: pd.Timestamp, view: FeatureViewSpec = VIEW
) -> dict[str, object]:
    def window(w: str, axis: str = "event_time") -> pd.DataFrame:
        rows = events[events.user_id == user]
        return rows[(rows[axis] >= _tail(view, w, at)) & (rows[axis] <= at)].sort_values(
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


@pytest.mark.parametrize("hop", HOPS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_as_of_lookup_equals_oracle_at_any_moment(seed: int, hop: str) -> None:
    events = _events(seed)
    view = _view(hop)
    plans = plan_aggregates(view, {"fraud": "label_time"}, "event_time")
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
    # exactly at expiry: an event is in its 1h window until it leaves, out from then on (exact:
    # t + 1h is in, 1µs later out; hopped: out at the first hop boundary after t, plus 1h)
    first = events.iloc[0].event_time
    hop_of_hour = view.window_hop("1h")
    epoch = pd.Timestamp("1970-01-01")
    leaves = (
        first + pd.Timedelta("1h") + pd.Timedelta(1, "us")
        if hop_of_hour is None
        else epoch + ((first - epoch) // hop_of_hour + 1) * hop_of_hour + pd.Timedelta("1h")
    )
    if hop_of_hour is not None:  # the oracle's own floor: in 1µs before, out at the boundary
        assert (
            _tail(view, "1h", leaves) > first >= _tail(view, "1h", leaves - pd.Timedelta(1, "us"))
        )
    moments += [leaves - pd.Timedelta(1, "us"), leaves]
    checked = 0
    for at in moments:
        for user in range(6):
            expected = _oracle(events, user, at, view)
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


@pytest.mark.parametrize("hop", HOPS)
def test_nothing_is_stamped_after_the_end_of_the_data(hop: str) -> None:
    """Every change point up to the end is the full table's; the compacted rows look up the same."""
    events = _events(0)
    plans = plan_aggregates(_view(hop), {"fraud": "label_time"}, "event_time")
    created = pd.Timestamp("2025-02-01")
    until = events.event_time.quantile(0.7).floor("us")
    every = plan_aggregates(
        _view(hop), {"fraud": "label_time"}, "event_time", every_change_point=True
    )
    for kept in (every, plans):
        full = compute_aggregates(events, ["user_id"], kept, created)
        cut = compute_aggregates(events, ["user_id"], kept, created, until=until)
        assert cut[EVENT_TIMESTAMP].max() <= until
        before = full[full[EVENT_TIMESTAMP] <= until].reset_index(drop=True)
        if kept is not plans:
            pd.testing.assert_frame_equal(cut, before)
    moments = pd.Timestamp("2025-01-01") + pd.to_timedelta(np.arange(0, 3 * 24 * 60, 7), "min")
    for at in moments[moments <= until]:
        for user in range(6):
            assert _same(_as_of(cut, user, at), _as_of(before, user, at)), (at, user)


def _same(left: pd.Series | None, right: pd.Series | None) -> bool:
    """Whether two looked-up rows (or two misses) hold the same feature values."""
    if left is None or right is None:
        return left is None and right is None
    for name in left.index.drop(EVENT_TIMESTAMP):
        a, b = left[name], right[name]
        if isinstance(a, list | np.ndarray):
            if list(a) != list(b):
                return False
        elif not (a == b or (pd.isna(a) and pd.isna(b))):
            return False
    return True


def _within_ttl(table: pd.DataFrame, user: int, at: pd.Timestamp, ttl: str) -> pd.Series | None:
    """Feast's lookup: the latest row at or before ``at``, unless older than the ttl."""
    row = _as_of(table, user, at)
    return None if row is None or row[EVENT_TIMESTAMP] < at - parse_duration(ttl) else row


@pytest.mark.parametrize("hop", ["exact", "25m"])
def test_repeated_rows_are_left_out_without_changing_a_lookup(hop: str) -> None:
    """Rows that repeat the row before are dropped (a 0 label arriving moves no sum), and a ttl
    lookup at any moment still finds the same values, or nothing, as with every change point.
    A ttl just over the longest window (plus its hop) makes runs of equal rows outlast it."""
    view = FeatureViewSpec(
        entities=["user"],
        ttl="26h",
        hop=hop,
        aggregates=[
            {"agg": "count", "windows": ["1h"]},
            {"column": "fraud", "agg": "sum", "windows": ["1d"]},
        ],
    )
    events = _events(3)
    # user 0 busy throughout; user 1 only in its first 8 hours, its labels arriving for 3 days
    # after: runs of equal rows (no 1h event, an unmoved sum) that outlast the ttl
    quiet = (events.user_id == 1) & (events.event_time < pd.Timestamp("2025-01-01 08:00"))
    events = events[(events.user_id == 0) | quiet]
    plans = plan_aggregates(view, {"fraud": "label_time"}, "event_time")
    created = pd.Timestamp("2025-02-01")
    compact = compute_aggregates(events, ["user_id"], plans, created)
    every_plan = plan_aggregates(
        view, {"fraud": "label_time"}, "event_time", every_change_point=True
    )
    every = compute_aggregates(events, ["user_id"], every_plan, created)
    assert len(compact) < 0.8 * len(every)
    assert set(compact[EVENT_TIMESTAMP]) <= set(every[EVENT_TIMESTAMP])
    moments = pd.Timestamp("2025-01-01") + pd.to_timedelta(np.arange(0, 9 * 24 * 3600, 600), "s")
    for at in moments:
        for user in (0, 1):
            assert _same(
                _within_ttl(compact, user, at, view.ttl), _within_ttl(every, user, at, view.ttl)
            ), (at, user)


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


def test_hopped_windows_share_change_points() -> None:
    """Events of one hop leave together: fewer rows than exact windows, each at an event, a label
    arriving, or a hop boundary plus a window."""
    events = _events(0)
    plans = {
        hop: plan_aggregates(
            _view(hop), {"fraud": "label_time"}, "event_time", every_change_point=True
        )
        for hop in HOPS
    }
    created = pd.Timestamp("2025-02-01")
    rows = {hop: compute_aggregates(events, ["user_id"], p, created) for hop, p in plans.items()}
    # 1,981 change points exact, 1,705 with Chronon's hops, 1,799 with 25m for every window
    assert len(rows["auto"]) < 0.9 * len(rows["exact"])
    assert len(rows["25m"]) < 0.95 * len(rows["exact"])
    stamps = rows["25m"][EVENT_TIMESTAMP]
    since = stamps - pd.Timestamp("1970-01-01")
    on_boundary = np.logical_or.reduce(
        [
            (since - pd.Timedelta(w)) % pd.Timedelta("25m") == pd.Timedelta(0)
            for w in ("1h", "1d", "7d")
        ]
    )
    at_event = stamps.isin(events.event_time) | stamps.isin(events.label_time)
    assert (on_boundary | at_event).all()


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ({"hop": "auto"}, "ttl 7d is shorter than window 7d plus its hop (1h)"),
        ({"hop": "2h", "ttl": "30d"}, "hop 2h is longer than window 1h"),
        ({"hop": "soon"}, "expected exact, auto or a duration like '5m', '1h' or '1d'"),
        ({"hop": "0m"}, "a hop must be longer than 0"),
    ],
)
def test_hop_is_checked_against_windows_and_ttl(update: dict[str, str], message: str) -> None:
    fields = {**VIEW.model_dump(exclude={"hop", "ttl"}), "ttl": "7d", **update}
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        FeatureViewSpec(**fields)
