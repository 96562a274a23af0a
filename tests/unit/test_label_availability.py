"""``labels.<x>.available_after``: a label known a fixed delay after its event, point in time.

On a transactions CSV without a label-time column (IEEE-CIS layout): a chargeback counts in the
card's fraud history only from event time + delay, exactly as if the user had added the
label-time column by hand; rows younger than the delay are left out; and the columns a label
lists as ``outcomes`` move with it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from assets.features.availability import known_at, outcome_axes, with_arrival_times
from assets.features.views import compute_aggregate_table, feature_tables
from assets.raw.tables import all_events
from assets.split.plan import plan_split
from assets.training.build import build_training_set
from assets.training.label_rows import label_rows
from configs.schema.usecase import UseCaseSpec
from dagster_project.use_case_files import load_use_cases
from tests.real_shaped import (
    FRAUD_FEATURE,
    ratings_config,
    transactions,
    transactions_config,
    visible_frauds,
)

CREATED = pd.Timestamp("2030-01-01")
DELAY = pd.Timedelta("7D")


def _load(path: Path) -> tuple[UseCaseSpec, pd.DataFrame]:
    (spec,) = load_use_cases([path])
    return spec, all_events(spec)


def _training_set(spec: UseCaseSpec, model: str, events: pd.DataFrame, folder: Path):
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for table in feature_tables(spec):
        paths[table.name] = str(folder / f"{table.name}.parquet")
        compute_aggregate_table(spec, table, events, CREATED).to_parquet(paths[table.name])
    labels = {name: label.column for name, label in spec.labels.items()}
    plan = plan_split(events, spec.split, spec.events.timestamp, None, labels)
    return build_training_set(spec, model, events, plan, paths)


def test_offset_label_counts_in_features_only_once_known(tmp_path: Path) -> None:
    spec, events = _load(transactions_config(tmp_path))
    assert spec.labels["fraud"].maturity == "7d"  # the delay is when the label is final
    result = _training_set(spec, "scorer", events, tmp_path / "features")
    frame = result.frame
    seen = frame[FRAUD_FEATURE].fillna(0).to_numpy()
    assert (seen == visible_frauds(frame, events, DELAY)).all()
    assert seen.sum() > 100  # frauds do show, once known
    # the same feature with the label read at event time differs: the check can tell leakage
    assert (seen != visible_frauds(frame, events, pd.Timedelta(0))).sum() > 50


def test_a_chargeback_shows_exactly_at_event_time_plus_offset(tmp_path: Path) -> None:
    start = pd.Timestamp("2019-03-10").timestamp()
    planted = pd.DataFrame(
        {
            "TransactionID": [1, 2, 3, 4],
            # a fraud, then the same card 7 days less a second, 7 days, 7 days and a second later
            "TransactionDT": [
                start,
                start + 7 * 86_400 - 1,
                start + 7 * 86_400,
                start + 7 * 86_400 + 1,
            ],
            "TransactionAmt": [500.0, 20.0, 20.0, 20.0],
            "ProductCD": "W",
            "card1": 7,
            "isFraud": [1, 0, 0, 0],
        }
    )
    frame = pd.concat(
        [transactions(), planted.astype({"TransactionDT": "int64"})], ignore_index=True
    )
    frame["TransactionID"] = np.arange(len(frame))
    spec, events = _load(transactions_config(tmp_path, frame=frame))
    result = _training_set(spec, "scorer", events, tmp_path / "features")
    card = result.frame[result.frame.card_id == 7].sort_values("event_time")
    # as of 1µs before each later transaction: before the arrival, still before it (the
    # arrival is at 7d exactly, the row's as-of 1µs earlier), then after it
    assert card[FRAUD_FEATURE].fillna(0).tolist()[1:] == [0, 0, 1]


def test_offset_is_the_label_time_column_a_user_would_add_by_hand(tmp_path: Path) -> None:
    spec, events = _load(transactions_config(tmp_path / "offset"))
    by_hand = transactions()
    by_hand["label_time"] = by_hand.TransactionDT + 7 * 86_400
    path = transactions_config(
        tmp_path / "column", ", available_at: label_time, maturity: 7d", frame=by_hand
    )
    text = path.read_text().replace(
        "    is_fraud: {dtype", "    label_time: timestamp\n    is_fraud: {dtype"
    )
    path.write_text(text)
    column_spec, column_events = _load(path)
    offset = _training_set(spec, "scorer", events, tmp_path / "a")
    column = _training_set(column_spec, "scorer", column_events, tmp_path / "b")
    pd.testing.assert_frame_equal(offset.frame, column.frame)
    assert offset.dropped_immature == column.dropped_immature > 0


def test_rows_younger_than_the_offset_are_left_out(tmp_path: Path) -> None:
    spec, events = _load(transactions_config(tmp_path))
    rows = label_rows(spec, "scorer", events)
    young = events.event_time > events.event_time.max() - DELAY
    assert rows.dropped_immature == int(young.sum()) > 0
    assert rows.frame.event_time.max() <= events.event_time.max() - DELAY
    # every kept row's label had arrived by the end of the data: taken as it is
    kept = events[~young].reset_index(drop=True)
    assert rows.frame.is_fraud.tolist() == kept.is_fraud.tolist()


def test_arrival_times_follow_the_rule(tmp_path: Path) -> None:
    spec, events = _load(transactions_config(tmp_path))
    pd.testing.assert_series_equal(
        known_at(spec, "fraud", events), events.event_time + DELAY, check_names=False
    )
    assert outcome_axes(spec) == {"is_fraud": "known_at__fraud"}
    assert with_arrival_times(spec, events).columns[-1] == "known_at__fraud"
    immediate, _ = _load(transactions_config(tmp_path / "now", ", available_after: 0s"))
    assert known_at(immediate, "fraud", events) is None and outcome_axes(immediate) == {}
    assert with_arrival_times(immediate, events) is events


def test_outcome_columns_move_with_their_label(tmp_path: Path) -> None:
    """``rating`` reveals ``liked``: listed in outcomes, its mean waits for the label's delay."""
    path = ratings_config(
        tmp_path,
        ", available_after: 1d, outcomes: [rating]",
        "{method: temporal, train: 0.6, validation: 0.2, test: 0.2}",
    )
    spec, events = _load(path)
    assert outcome_axes(spec) == {"liked": "known_at__liked", "rating": "known_at__liked"}
    (table,) = feature_tables(spec)
    features = compute_aggregate_table(spec, table, events, CREATED)
    # each row of the table: mean rating of the user's ratings known (rated 1d earlier) within
    # the 7 days up to that row's time
    sample = features.dropna(subset=["rating_mean_7d"]).sample(200, random_state=0)
    for row in sample.itertuples():
        mine = events[events.user_id == row.user_id]
        known = mine.event_time + pd.Timedelta("1D")
        inside = (known <= row.event_timestamp) & (
            known >= row.event_timestamp - pd.Timedelta("7D")
        )
        assert row.rating_mean_7d == pytest.approx(mine.rating[inside].mean())
