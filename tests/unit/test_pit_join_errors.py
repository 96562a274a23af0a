"""Point-in-time join: its errors name the table and the column at fault.

Missing key or feature columns, times that are not timestamps, and feature names that collide
with each other or with the labels' columns, each on a two-row example.
"""

from __future__ import annotations

import pytest

from assets.training.pit_join import FeatureTable, point_in_time_join
from tests.unit.pit_join_cases import TTL_USER, _simple


def test_missing_key_column_names_the_table() -> None:
    labels, table = _simple()
    view = FeatureTable("scores", table.drop(columns="user_id"), ("user_id",), ("score",), TTL_USER)
    with pytest.raises(ValueError, match=r"'scores'.*user_id"):
        point_in_time_join(labels, [view])
    with pytest.raises(ValueError, match=r"account_id.*'scores'"):
        point_in_time_join(
            labels, [FeatureTable("scores", table, ("account_id",), ("score",), TTL_USER)]
        )


def test_missing_feature_column_names_the_table() -> None:
    labels, table = _simple()
    with pytest.raises(ValueError, match=r"'scores'.*rank"):
        point_in_time_join(
            labels, [FeatureTable("scores", table, ("user_id",), ("rank",), TTL_USER)]
        )


def test_non_timestamp_as_of_is_rejected() -> None:
    labels, table = _simple()
    labels["event_timestamp"] = labels["event_timestamp"].astype(str)
    with pytest.raises(ValueError, match=r"labels.*'event_timestamp'.*not a timestamp"):
        point_in_time_join(labels, [FeatureTable("t", table, ("user_id",), ("score",), TTL_USER)])
    with pytest.raises(ValueError, match=r"as-of column 'ts'"):
        point_in_time_join(
            labels, [FeatureTable("t", table, ("user_id",), ("score",), TTL_USER)], as_of="ts"
        )


def test_non_timestamp_feature_time_names_the_table() -> None:
    labels, table = _simple()
    table["event_timestamp"] = 0
    with pytest.raises(ValueError, match=r"'scores'.*'event_timestamp'.*not a timestamp"):
        point_in_time_join(
            labels, [FeatureTable("scores", table, ("user_id",), ("score",), TTL_USER)]
        )


def test_name_collisions_are_rejected() -> None:
    labels, table = _simple()
    tables = [FeatureTable(n, table, ("user_id",), ("score",), TTL_USER) for n in ("a", "b")]
    with pytest.raises(ValueError, match=r"'score' of 'b'.*prefix_features"):
        point_in_time_join(labels, tables)
    assert list(point_in_time_join(labels, tables, prefix_features=True).columns[-2:]) == [
        "a__score",
        "b__score",
    ]
    labels["score"] = 1.0
    with pytest.raises(ValueError, match=r"'score' of 'a'"):
        point_in_time_join(labels, tables[:1])
