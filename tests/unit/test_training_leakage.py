"""Leakage tests: training sets built from hand-made events, checked value by value.

The fraud spec is used as shipped (windowed counts and sums, time since last, a chargeback-count
feature on the delayed label axis, maturity); events are planted so that every way a future value
could leak into a training row would show.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from assets.features.views import (
    compute_aggregate_table,
    compute_attribute_table,
    feature_tables,
)
from assets.split.plan import plan_split
from assets.training.build import build_training_set
from assets.training.label_rows import AS_OF, LabelRowError, label_rows
from assets.training.pit_join import FeatureTable, point_in_time_join
from configs import CONFIG_DIR
from dagster_project.use_case_files import load_use_cases

T0 = pd.Timestamp("2025-01-01 00:00:00")
CREATED = pd.Timestamp("2025-03-01")


@pytest.fixture(scope="module")
def fraud():
    (spec,) = load_use_cases([CONFIG_DIR / "fraud.yaml"])
    split = spec.split.model_copy(
        update={"train": 0.5, "validation": 0.2, "test": 0.3, "gap": "0d"}
    )
    return spec.model_copy(update={"split": split})


def _events(rows: list[tuple]) -> pd.DataFrame:
    """(card, minutes after T0, amount, fraud, label delay in days) -> fraud events."""
    frame = pd.DataFrame(rows, columns=["card_id", "minutes", "amount", "is_fraud", "delay_days"])
    frame["event_time"] = T0 + pd.to_timedelta(frame.minutes, "min")
    frame["label_time"] = frame.event_time + pd.to_timedelta(frame.delay_days, "D")
    n = len(frame)
    return frame.assign(
        transaction_id=np.arange(n),
        merchant_id=frame.card_id % 3,
        mcc="5411",
        device_id=frame.card_id,
        country="NL",
        hour=frame.event_time.dt.hour,
        channel="pos",
    ).drop(columns=["minutes", "delay_days"])


def _entity_frames() -> dict[str, pd.DataFrame]:
    cards = pd.DataFrame(
        {
            "card_id": np.arange(10),
            "home_country": "NL",
            "card_type": "credit",
            "issued_at": T0 - pd.Timedelta("30D"),
        }
    )
    merchants = pd.DataFrame({"merchant_id": np.arange(3), "mcc": "5411", "merchant_country": "NL"})
    return {"card": cards, "merchant": merchants}


def _build(spec, events: pd.DataFrame, tmp_path: Path):
    paths = {}
    entities = _entity_frames()
    tmp_path.mkdir(parents=True, exist_ok=True)
    for table in feature_tables(spec):
        if table.kind == "aggregates":
            frame = compute_aggregate_table(spec, table, events, CREATED)
        else:
            frame = compute_attribute_table(spec, table, entities[table.entities[0]], CREATED)
        paths[table.name] = str(tmp_path / f"{table.name}.parquet")
        frame.to_parquet(paths[table.name], index=False)
    plan = plan_split(events, spec.split, "event_time", None, {"fraud": "is_fraud"})
    return build_training_set(spec, "scorer", events, plan, paths)


def _row(result, card: int, minutes: float) -> pd.Series:
    frame = result.frame
    at = T0 + pd.Timedelta(minutes, "min")
    (index,) = frame.index[(frame.card_id == card) & (frame.event_time == at)]
    return frame.loc[index]


# Card 1 transacts every 10 minutes, then once after 2 hours; its first transaction is a fraud
# confirmed 2 days later. Card 2 transacts once. The data runs 30 days (maturity is 10d).
BASE = [
    (1, 0, 100.0, 1, 2.0),
    (1, 10, 20.0, 0, 3.0),
    (1, 20, 30.0, 0, 3.0),
    (1, 150, 40.0, 0, 3.0),
    (1, 3 * 24 * 60, 50.0, 0, 3.0),
    (2, 60, 70.0, 0, 3.0),
    *[(3 + i % 5, 1440 * (5 + i // 2) + i, 10.0, 0, 3.0) for i in range(40)],
]


def test_own_event_and_later_events_never_leak(fraud, tmp_path: Path) -> None:
    result = _build(fraud, _events(BASE), tmp_path)
    second = _row(result, 1, 10)
    assert second["card_velocity__events_count_1h"] == 1  # only the first, not itself
    assert second["card_velocity__amount_sum_1h"] == 100.0
    assert second["card_velocity__seconds_since_last_30d"] == pytest.approx(600, abs=1e-3)
    third = _row(result, 1, 20)
    assert third["card_velocity__events_count_1h"] == 2
    assert third["card_velocity__amount_sum_1h"] == 120.0
    # 150 minutes: the 1h window has emptied (0, a known value), the 1d window has not
    late = _row(result, 1, 150)
    assert late["card_velocity__events_count_1h"] == 0
    assert late["card_velocity__amount_sum_1h"] == 0.0
    assert late["card_velocity__events_count_1d"] == 3


def test_chargeback_counts_only_once_it_has_arrived(fraud, tmp_path: Path) -> None:
    result = _build(fraud, _events(BASE), tmp_path)
    # the fraud at minute 0 is confirmed on day 2: not visible at 150 minutes, visible on day 3
    assert _row(result, 1, 150)["card_velocity__is_fraud_sum_30d"] == 0
    assert _row(result, 1, 3 * 24 * 60)["card_velocity__is_fraud_sum_30d"] == 1


def test_entities_without_history_get_nulls_not_zeros(fraud, tmp_path: Path) -> None:
    result = _build(fraud, _events(BASE), tmp_path)
    first = _row(result, 2, 60)
    windowed = [c for c in result.feature_columns if c.startswith("card_velocity__")]
    assert first[windowed].isna().all(), first[windowed]
    # attributes are known (issued 30 days earlier): present, not null
    assert first["card_velocity_attributes__home_country"] == "NL"


def test_shuffled_events_give_the_same_training_set(fraud, tmp_path: Path) -> None:
    events = _events(BASE)
    ordered = _build(fraud, events, tmp_path / "a").frame
    shuffled = _build(fraud, events.sample(frac=1.0, random_state=3), tmp_path / "b").frame
    key = ["event_time", "card_id"]
    pd.testing.assert_frame_equal(
        ordered.sort_values(key, ignore_index=True),
        shuffled.sort_values(key, ignore_index=True),
    )


def test_immature_rows_dropped_and_late_labels_taken_as_known(fraud, tmp_path: Path) -> None:
    last = 30 * 24 * 60
    rows = [
        *BASE,
        (5, last - 15 * 24 * 60, 10.0, 1, 20.0),  # mature, chargeback after the data ends
        (5, last - 2 * 24 * 60, 10.0, 1, 1.0),  # confirmed, but younger than 10d maturity
        (6, last, 10.0, 0, 3.0),  # the last event: defines the cutoff
    ]
    events = _events(rows)
    result = _build(fraud, events, tmp_path)
    frame = result.frame
    late = frame[
        (frame.card_id == 5) & (frame.event_time == T0 + pd.Timedelta(last - 15 * 1440, "min"))
    ]
    assert late.is_fraud.tolist() == [0]  # not known at the cutoff
    young = T0 + pd.Timedelta(last - 2 * 1440, "min")
    assert not (frame.event_time >= young).any()
    young_events = events.event_time > events.event_time.max() - pd.Timedelta("10D")
    assert result.dropped_immature == young_events.sum() > 2


def test_a_value_stamped_at_the_label_moment_is_not_visible(fraud) -> None:
    events = _events(BASE)
    rows = label_rows(fraud, "scorer", events).frame
    planted = pd.DataFrame(
        {
            "card_id": events.card_id,
            "event_timestamp": events.event_time.dt.floor("us"),  # known at the event itself
            "created_timestamp": CREATED,
            "future": 1.0,
        }
    )
    table = FeatureTable("planted", planted, ("card_id",), ("future",), pd.Timedelta("30D"))
    joined = point_in_time_join(rows, [table], as_of=AS_OF)
    first = joined.groupby("card_id").event_time.transform("min") == joined.event_time
    assert joined.loc[first, "future"].isna().all()  # only earlier events' stamps are visible
    assert joined.loc[~first, "future"].notna().all()


def test_null_key_or_time_is_a_clear_error(fraud) -> None:
    events = _events(BASE)
    events["card_id"] = events.card_id.astype("Int64")
    events.loc[3, "card_id"] = pd.NA
    with pytest.raises(LabelRowError, match=r"entities\.card\.key \('card_id'\): 1 label events"):
        label_rows(fraud, "scorer", events)
    events = _events(BASE)
    events.loc[2, "event_time"] = pd.NaT
    with pytest.raises(LabelRowError, match=r"events\.timestamp"):
        label_rows(fraud, "scorer", events)
