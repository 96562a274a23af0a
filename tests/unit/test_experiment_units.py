"""The per-unit table of an experiment, from a hand-made request log and events."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from assets.experiments.units import experiment_units, request_times, unit_keys

ARMS = ["control", "treatment"]
T0 = pd.Timestamp("2025-01-07 10:00")


def _seconds(stamp: pd.Timestamp) -> float:
    return stamp.tz_localize("UTC").timestamp()


def _log(rows: list[tuple]) -> pd.DataFrame:
    """``(logged_at, unit, arm, request)`` rows in :func:`read_request_log`'s shape."""
    frame = pd.DataFrame(rows, columns=["logged_at", "unit", "arm", "request"])
    frame["endpoint"] = "recommend"
    return frame


def _events(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "event_time", "clicked"])


HOUR = pd.Timedelta("1h")
LATER = _seconds(T0 + 100 * HOUR)  # when replayed requests were logged: after every event

LOG = _log(
    [
        # unit 1: control, exposed at T0, seen again 2h later
        (_seconds(T0), "1", "control", {"user_id": 1}),
        (_seconds(T0 + 2 * HOUR), "1", "control", {"user_id": 1}),
        # unit 2: treatment, replayed as of T0 + 1h (logged much later)
        (LATER, "2", "treatment", {"user_id": 2, "as_of": "2025-01-07T11:00:00"}),
        # unit 3: logged in both arms, a routing bug
        (_seconds(T0), "3", "control", {"user_id": 3}),
        (_seconds(T0 + HOUR), "3", "treatment", {"user_id": 3}),
        # unit 4: exposed, but no event before or after
        (_seconds(T0), "4", "treatment", {"user_id": 4}),
        # an earlier experiment's arm, and a request without a unit
        (_seconds(T0), "6", "old_arm", {"user_id": 6}),
        (_seconds(T0), None, None, {}),
    ]
)
EVENTS = _events(
    [
        (1, T0 - 2 * HOUR, 1),
        (1, T0 - HOUR, 0),  # before: covariate 1/2
        (1, T0, 1),  # at exposure: counts after
        (1, T0 + HOUR, 0),
        (1, T0 + 2 * HOUR, 0),  # after: rate 1/3
        (1, T0 + 3 * HOUR, None),  # no label yet: ignored
        (2, T0 + 0.5 * HOUR, 1),  # before its as_of exposure
        (2, T0 + 5 * HOUR, 1),
        (3, T0 + 5 * HOUR, 1),
        (5, T0 + 5 * HOUR, 1),  # never exposed
        (6, T0 + 5 * HOUR, 1),  # only in an arm the experiment does not have
    ]
)


def _units(outcome: str = "rate", events: pd.DataFrame = EVENTS):
    return experiment_units(
        LOG,
        events,
        arms=ARMS,
        unit_column="user_id",
        label_column="clicked",
        timestamp_column="event_time",
        outcome=outcome,
    )


def test_arms_exposure_outcome_after_and_covariate_before() -> None:
    units = _units()
    table = units.table.set_index("unit")
    assert list(table.index) == ["1", "2", "4"]
    assert table["arm"].to_dict() == {"1": "control", "2": "treatment", "4": "treatment"}
    assert table.loc["1", "exposed_at"] == T0 and table.loc["1", "requests"] == 2
    assert table.loc["2", "exposed_at"] == T0 + HOUR  # the request's as_of, not logged_at
    assert table.loc["1", "outcome"] == pytest.approx(1 / 3)
    assert table.loc["1", "covariate"] == pytest.approx(1 / 2)
    assert (table.loc["1", "events_before"], table.loc["1", "events_after"]) == (2, 3)
    assert table.loc["2", "outcome"] == 1.0 and table.loc["2", "covariate"] == 1.0
    assert math.isnan(table.loc["4", "outcome"]) and math.isnan(table.loc["4", "covariate"])
    assert list(units.analysable["unit"]) == ["1", "2"]
    assert units.units_per_arm(ARMS) == {"control": 1, "treatment": 2}
    assert units.units_per_arm(ARMS, analysable=True) == {"control": 1, "treatment": 1}


def test_units_in_two_arms_and_foreign_rows_are_left_out_and_reported() -> None:
    units = _units()
    assert units.mixed_units == ["3"]
    assert "3" not in set(units.table["unit"]) and "6" not in set(units.table["unit"])
    assert units.foreign_requests == 1 and units.unassigned_requests == 1


def test_conversion_outcome_is_any_positive_label_and_zero_without_events() -> None:
    table = _units("conversion").table.set_index("unit")
    assert table["outcome"].to_dict() == {"1": 1.0, "2": 1.0, "4": 0.0}
    assert table.loc["1", "covariate"] == 1.0 and math.isnan(table.loc["4", "covariate"])


def test_units_match_across_types_and_time_zones() -> None:
    events = EVENTS.assign(
        user_id=EVENTS["user_id"].astype(float),
        event_time=EVENTS["event_time"].dt.tz_localize("UTC").dt.tz_convert("Europe/Paris"),
    )
    pd.testing.assert_frame_equal(_units(events=events).table, _units().table)
    assert unit_keys(pd.Series([7.0, np.nan])).tolist()[0] == "7"
    assert unit_keys(pd.Series(["a", "b"])).tolist() == ["a", "b"]


def test_request_time_is_as_of_when_given_and_parseable() -> None:
    log = _log(
        [
            (_seconds(T0), "1", "control", {"as_of": "2025-01-01T00:00:00+01:00"}),
            (_seconds(T0), "2", "control", {"as_of": "not a time"}),
            (_seconds(T0), "3", "control", {}),
        ]
    )
    times = request_times(log).tolist()
    assert times == [pd.Timestamp("2024-12-31 23:00"), T0, T0]


def test_empty_log_gives_an_empty_table() -> None:
    units = experiment_units(
        LOG.iloc[:0],
        EVENTS,
        arms=ARMS,
        unit_column="user_id",
        label_column="clicked",
        timestamp_column="event_time",
    )
    assert units.table.empty and units.analysable.empty and not units.mixed_units
    assert units.units_per_arm(ARMS) == {"control": 0, "treatment": 0}


def test_bad_inputs_name_what_is_missing() -> None:
    with pytest.raises(ValueError, match="outcome must be one of"):
        _units("clicks")
    with pytest.raises(ValueError, match=r"events: missing column\(s\) \['clicked'\]"):
        _units(events=EVENTS.drop(columns="clicked"))
    with pytest.raises(ValueError, match=r"request log: missing column\(s\) \['arm'\]"):
        experiment_units(
            LOG.drop(columns="arm"),
            EVENTS,
            arms=ARMS,
            unit_column="user_id",
            label_column="clicked",
            timestamp_column="event_time",
        )
