"""Point-in-time join against a brute-force oracle, on random data with planted edge cases.

The data and the oracle are in :mod:`tests.unit.pit_join_cases`; the key encodings, Feast's
DuckDB store and the errors have test files of their own (``test_pit_join_*.py``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from assets.training.pit_join import FeatureTable, point_in_time_join
from tests.unit.pit_join_cases import (
    FEATURE_COLUMNS,
    ORACLE_CASES,
    TTL_USER,
    _assert_same,
    _cells,
    _expected,
    _simple,
    _tables,
    make_data,
)


@pytest.mark.parametrize(("seed", "lag_us", "unit"), ORACLE_CASES)
def test_matches_brute_force_oracle(seed: int, lag_us: int, unit: int) -> None:
    labels, user, pair = make_data(seed, lag_us, unit)
    result = point_in_time_join(labels, _tables(user, pair), prefix_features=True)
    expected = _expected(labels, user, pair)
    assert list(result.columns) == list(expected.columns)
    assert result.index.equals(labels.index)
    _assert_same(result, expected, ["row_id", "user_id", "label", *FEATURE_COLUMNS])


def test_planted_cases_are_exercised() -> None:
    """Guard the test data: each planted edge case must decide some label's answer."""
    labels, user, pair = make_data(0)
    expected = _expected(labels, user, pair)
    planted = expected[expected["user_id"].fillna(0) >= 1_000]
    variants = labels.loc[planted.index, "event_timestamp"].dt.microsecond % 5
    found = planted["users__u_int"].notna()
    assert found[variants == 0].all() and not found[variants == 1].any()
    assert found[variants.isin([2, 3, 4])].all()
    assert expected["users__u_int"].isna().sum() > 200  # nulls from no history and null keys
    ties = user.duplicated(["user_id", "event_timestamp"], keep=False)
    assert ties.sum() > 500


def test_simple_example() -> None:
    labels, table = _simple()
    result = point_in_time_join(
        labels, [FeatureTable("t", table, ("user_id",), ("score",), TTL_USER)]
    )
    assert _cells(result["score"]) == [0.5, None]


def test_no_created_column_and_null_as_of() -> None:
    """Without a created column the newest event still wins; a null as-of time matches nothing."""
    labels, table = _simple()
    labels["event_timestamp"] = labels["event_timestamp"].astype(object)
    labels.loc[2] = [1, None]
    labels["event_timestamp"] = pd.to_datetime(labels["event_timestamp"], utc=True)
    later = table.assign(
        event_timestamp=table["event_timestamp"] + pd.Timedelta(hours=1), score=0.7
    )
    table = pd.concat([later, table]).drop(columns="created_timestamp")
    view = FeatureTable("t", table, ("user_id",), ("score",), TTL_USER, created_timestamp=None)
    assert _cells(point_in_time_join(labels, [view])["score"]) == [0.7, None, None]


def test_parquet_input_and_unprefixed(tmp_path: Path) -> None:
    """A parquet path is scanned directly and gives the same answer as the DataFrame."""
    labels, user, pair = make_data(3)
    user.to_parquet(tmp_path / "user.parquet")
    pair.to_parquet(tmp_path / "pair.parquet")
    result = point_in_time_join(
        labels, _tables(str(tmp_path / "user.parquet"), str(tmp_path / "pair.parquet"))
    )
    expected = _expected(labels, user, pair)
    expected.columns = [c.split("__")[-1] for c in expected.columns]
    _assert_same(result, expected, [c.split("__")[-1] for c in FEATURE_COLUMNS])
