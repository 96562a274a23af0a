"""Reads of the event log's day files equal the whole log's, cut in memory: drift's two periods,
the split plan's columns and the SLO check's test rows.

The fraud world's days are written as ``raw_events`` partitions are (one Parquet file per day);
the frame the IO manager would hand a downstream asset is their concatenation. From the files,
:func:`drift_periods` must give exactly that frame's recent window and training period (rows,
order, dtypes; the period as a file's chunk at a time, concatenated), projected to the columns
drift reads, for windows of one, a few and all days.
"""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd
import pytest
from upath import UPath

from assets.monitoring.drift_events import (
    drift_event_columns,
    drift_periods,
    recent_window,
    window_start,
)
from assets.raw.event_log import read_events, rows_per_day
from assets.raw.synthetic.fraud import FraudWorld
from assets.serving import slo_requests
from assets.split.plan import assign_split, plan_split
from assets.split.split_plan_assets import split_plan_columns
from configs import CONFIG_DIR
from configs.schema import load_specs
from configs.schema.source import FraudGeneratorParams

START, DAYS = date(2024, 5, 1), 6


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[UPath], pd.DataFrame]:
    """The day files and the frame the IO manager would load from them."""
    folder = tmp_path_factory.mktemp("raw_events")
    world = FraudWorld(
        FraudGeneratorParams(n_cards=300, n_merchants=40, transactions_per_day=1500), 3, START, DAYS
    )
    files = []
    for i in range(DAYS):
        day = START + timedelta(days=i)
        files.append(UPath(folder / f"{day.isoformat()}.parquet"))
        world.events_for_day(day).to_parquet(files[-1], index=False)
    whole = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    return files, whole


def _spec(min_window_rows: int):
    (spec,) = load_specs([CONFIG_DIR / "fraud.yaml"])
    monitoring = spec.monitoring.model_copy(update={"min_window_rows": min_window_rows})
    return spec.model_copy(update={"monitoring": monitoring})


def _plan(start: str, end: str) -> pd.DataFrame:
    return pd.DataFrame(
        {"split": ["train"], "window_start": [pd.Timestamp(start)], "window_end": [end]}
    )


@pytest.mark.parametrize("min_rows", [1, 2_000, 10**9])
def test_drift_periods_from_files_equal_the_whole_log_cut_in_memory(log, min_rows: int) -> None:
    files, whole = log
    spec = _spec(min_rows)
    plan = _plan("2024-05-01 06:00", "2024-05-04 12:30")
    chunks, window = drift_periods(spec, files, plan)
    reference = pd.concat(list(chunks(chunks.columns)), ignore_index=True)
    assert sum(1 for _ in chunks(chunks.columns)) == len(files), "one file's rows at a time"

    columns = drift_event_columns(spec)
    time = whole[spec.events.timestamp]
    expected_window = recent_window(whole, spec.events.timestamp, min_rows)[columns]
    in_train = (time >= pd.Timestamp("2024-05-01 06:00")) & (time < "2024-05-04 12:30")
    expected_reference = whole[in_train][columns]
    pd.testing.assert_frame_equal(window, expected_window.reset_index(drop=True))
    pd.testing.assert_frame_equal(reference, expected_reference.reset_index(drop=True))
    assert 0 < len(reference) < len(whole)
    if min_rows == 1:
        assert window[spec.events.timestamp].dt.floor("D").nunique() == 1  # the last day alone
    if min_rows == 10**9:
        assert len(window) == len(whole)  # fewer rows than asked: every day


def test_drift_reads_only_the_columns_it_looks_at(log) -> None:
    spec = _spec(1)
    columns = drift_event_columns(spec)
    assert spec.events.timestamp in columns and "amount" in columns and "is_fraud" in columns
    assert "label_time" in columns, "the label's arrival time: the label-rate shift needs it"
    assert not {"transaction_id", "card_id", "merchant_id"} & set(columns), "keys are not watched"
    assert len(columns) < len(log[1].columns)


def test_rows_per_day_and_the_window_start(log) -> None:
    files, whole = log
    per_day = rows_per_day(files, "event_time")
    pd.testing.assert_series_equal(
        per_day, whole["event_time"].dt.floor("D").value_counts().sort_index(), check_names=False
    )
    newest = per_day.index[-1]
    assert window_start(per_day, 1) == newest
    assert window_start(per_day, int(per_day.iloc[-1]) + 1) == per_day.index[-2]
    with pytest.raises(ValueError, match="no rows with a time"):
        window_start(pd.Series(dtype="int64"), 10)


def test_read_events_bounds_are_half_open_and_zone_aware(log) -> None:
    files, whole = log
    start, end = pd.Timestamp("2024-05-02"), pd.Timestamp("2024-05-03")
    naive = read_events(files, ["event_time", "amount"], "event_time", start, end)
    aware = read_events(
        files,
        ["event_time", "amount"],
        "event_time",
        start.tz_localize("UTC"),
        end.tz_localize("UTC"),
    )
    pd.testing.assert_frame_equal(naive, aware)
    assert naive["event_time"].min() >= start and naive["event_time"].max() < end
    assert len(naive) == ((whole["event_time"] >= start) & (whole["event_time"] < end)).sum()


def test_split_plan_columns_and_test_rows_from_files_equal_the_whole_log(log) -> None:
    files, whole = log
    spec = _spec(1)
    spec = spec.model_copy(update={"split": spec.split.model_copy(update={"gap": "1h"})})
    time, group = spec.events.timestamp, spec.events.group
    events = read_events(files, split_plan_columns(spec, files))
    assert set(events.columns) == {time, "is_fraud"}, "the time and the label: nothing else"
    pd.testing.assert_frame_equal(events, whole[list(events.columns)])

    labels = {name: label.column for name, label in spec.labels.items()}
    plan = plan_split(whole, spec.split, time, group, labels)
    split = assign_split(spec.split, whole, plan, time, group)
    expected = whole[split.to_numpy() == "test"].reset_index(drop=True)
    assert 0 < len(expected) < len(whole)
    pd.testing.assert_frame_equal(slo_requests.test_events(spec, files, plan), expected)
