"""Train/validation/test assignment: temporal windows with gaps, and stable group hashing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from assets.split.plan import GAP, assign_groups, assign_temporal, plan_split, temporal_windows
from configs.schema.tables import SplitSpec


def _events(days: int = 10, per_hour: int = 2) -> pd.DataFrame:
    times = pd.date_range("2025-01-01", periods=days * 24 * per_hour, freq=f"{60 // per_hour}min")
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "event_time": times,
            "query": rng.integers(0, 200, len(times)),
            "clicked": rng.integers(0, 2, len(times)),
        }
    )


def test_temporal_windows_are_ordered_fractions_with_gaps() -> None:
    events = _events()
    spec = SplitSpec(train=0.6, validation=0.2, test=0.2, gap="6h")
    first, last = events.event_time.min(), events.event_time.max()
    train, validation, test = temporal_windows(first, last, spec)
    span = last - first
    assert train.start == first and train.end == first + span * 0.6
    assert validation.start - train.end == pd.Timedelta("6h")
    assert test.start - validation.end == pd.Timedelta("6h")
    split = assign_temporal(events.event_time, [train, validation, test])
    # every train row precedes every validation row precedes every test row, gap rows in between
    by_split = events.groupby(split.to_numpy()).event_time.agg(["min", "max"])
    assert by_split.loc["train", "max"] < by_split.loc["validation", "min"]
    assert by_split.loc["validation", "max"] < by_split.loc["test", "min"]
    assert by_split.loc["validation", "min"] - by_split.loc["train", "max"] >= pd.Timedelta("6h")
    assert (split == GAP).sum() == 2 * 12  # two 6h gaps at 2 rows/hour
    assert split.iloc[-1] == "test" and split.iloc[0] == "train"


def test_temporal_fractions_hold_without_gap() -> None:
    events = _events()
    split = assign_temporal(
        events.event_time,
        temporal_windows(events.event_time.min(), events.event_time.max(), SplitSpec()),
    )
    shares = split.value_counts(normalize=True)
    assert shares["train"] == pytest.approx(0.7, abs=0.01)
    assert shares["test"] == pytest.approx(0.15, abs=0.01)
    assert GAP not in set(split)


def test_group_split_keeps_groups_whole_and_is_stable() -> None:
    events = _events()
    spec = SplitSpec(method="group", train=0.5, validation=0.25, test=0.25, seed=3)
    split = assign_groups(events["query"], spec)
    assert (events.assign(split=split.to_numpy()).groupby("query").split.nunique() == 1).all()
    assert split.equals(assign_groups(events["query"], spec))
    other = assign_groups(
        events["query"], SplitSpec(method="group", train=0.5, validation=0.25, test=0.25, seed=4)
    )
    assert not split.equals(other)
    groups = (
        events.assign(split=split.to_numpy())
        .drop_duplicates("query")
        .split.value_counts(normalize=True)
    )
    assert groups["train"] == pytest.approx(0.5, abs=0.1)


def test_plan_reports_windows_rows_and_label_rates() -> None:
    events = _events()
    plan = plan_split(events, SplitSpec(gap="1h"), "event_time", "query", {"click": "clicked"})
    assert list(plan.split) == ["train", "validation", "test", "gap"]
    assert plan.rows.sum() == len(events)
    assert {"window_start", "window_end", "click_rate", "groups"} <= set(plan.columns)
    with pytest.raises(ValueError, match="empty"):
        plan_split(events.head(0), SplitSpec(), "event_time", None, {})
