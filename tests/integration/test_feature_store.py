"""FeatureStoreResource against real Feast repos: the registry, materialization and offline reads.

No mocks: every test builds Parquet files and a Feast repo under ``tmp_path`` and goes through
Feast's own registry, DuckDB offline store and SQLite online store. The repos, the request and
the hand-checked answers are in :mod:`tests.integration.feature_store_cases`; the online reads
and the in-process cache have test files of their own (``test_feature_store_*.py``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from feast.types import Array, Float64, Int64, String, UnixTimestamp
from feast.value_type import ValueType

from resources.feast_definitions import FeatureRepoDef
from resources.feature_store import FeatureStoreResource
from tests.integration.feature_store_cases import (
    END,
    REQUEST,
    TTL,
    USER_FEATURES,
    assert_latest_values,
    assert_same_as_sdk,
    full_repo,
    ts,
    user_view,
    users_only_repo,
)


def test_apply_registers_the_repo_and_removes_dropped_views(
    tmp_path: Path, sqlite_store: FeatureStoreResource
) -> None:
    summary = sqlite_store.apply(full_repo(tmp_path))
    assert summary["feature_views"] == ["user_item", "user_stats"]
    assert summary["entities"] == ["item", "user"]
    assert summary["removed"] == []
    assert (tmp_path / "feast" / "shop" / "feature_store.yaml").exists()

    store = sqlite_store.store("shop")
    entities = {e.name: (e.join_key, e.value_type) for e in store.list_entities()}
    assert entities == {
        "user": ("user_id", ValueType.INT64),
        "item": ("item_id", ValueType.STRING),
    }
    view = store.get_feature_view("user_stats")
    assert {f.name: f.dtype for f in view.features} == {
        "score": Float64,
        "visits": Int64,
        "segment": String,
        "last_seen": UnixTimestamp,
        "item_ids": Array(Int64),
        "tags": Array(String),
    }
    assert view.ttl == TTL and view.tags == {"team": "recsys"}
    assert view.batch_source.path == str(tmp_path / "user_stats.parquet")
    assert sorted(store.get_feature_view("user_item").entities) == ["item", "user"]
    ranking = store.get_feature_service("ranking")
    assert [p.name for p in ranking.feature_view_projections] == ["user_stats", "user_item"]
    assert sorted(s.name for s in store.list_data_sources()) == [
        "user_item_source",
        "user_stats_source",
    ]

    summary = sqlite_store.apply(users_only_repo(tmp_path))
    assert summary["removed"] == [
        "Entity:item",
        "FeatureService:ranking",
        "FeatureView:user_item",
        "FileSource:user_item_source",
    ]
    assert [v.name for v in store.list_feature_views()] == ["user_stats"]
    assert [s.name for s in store.list_feature_services()] == ["users"]
    assert [e.name for e in store.list_entities()] == ["user"]
    assert [s.name for s in store.list_data_sources()] == ["user_stats_source"]


def test_unknown_service_view_is_rejected(tmp_path: Path) -> None:
    repo = FeatureRepoDef("shop", (user_view(tmp_path),), {"ranking": ("user_stats", "nope")})
    with pytest.raises(ValueError, match="unknown views"):
        FeatureStoreResource(root=str(tmp_path / "feast")).apply(repo)


def test_explicit_then_incremental_materialization(
    tmp_path: Path, sqlite_store: FeatureStoreResource
) -> None:
    repo = users_only_repo(tmp_path)
    sqlite_store.apply(repo)
    first_end = datetime(2020, 1, 1, 12, tzinfo=UTC)
    summary = sqlite_store.materialize(repo, end=first_end, start=datetime(2019, 12, 31))
    assert summary["intervals"]["user_stats"] == {
        "start": "2019-12-31T00:00:00+00:00",
        "end": "2020-01-01T12:00:00+00:00",
    }
    assert summary["rows_written"] == {"user_stats": 2}  # users 1 and 3 on day 1
    frame = assert_same_as_sdk(sqlite_store, repo, "users", REQUEST[["user_id"]])
    assert frame["user_stats__score"].iloc[0] == 1.0  # day 1 only
    assert frame["user_stats__score"].iloc[[1, 2, 3]].isna().all()  # 2: day 2; 3: nulls; 9: none
    assert frame["user_stats__segment"].tolist()[:3] == ["a", None, None]

    # The YAML gains a view: the old one resumes at its last end, the new one starts at
    # end - ttl although end lies years before now (Feast's own default would be now - ttl).
    repo = full_repo(tmp_path)
    sqlite_store.apply(repo)
    summary = sqlite_store.materialize(repo, end=END)
    assert summary["intervals"] == {
        "user_stats": {"start": "2020-01-01T12:00:00+00:00", "end": "2020-01-03T00:00:00+00:00"},
        "user_item": {"start": "2019-12-04T00:00:00+00:00", "end": "2020-01-03T00:00:00+00:00"},
    }
    assert summary["rows_written"] == {"user_stats": 3, "user_item": 2}
    assert_latest_values(assert_same_as_sdk(sqlite_store, repo, "ranking", REQUEST))

    # Nothing new to do up to the same end.
    assert sqlite_store.materialize(repo, end=END)["rows_written_total"] == 0


def test_first_incremental_materialization_starts_at_end_minus_ttl(
    tmp_path: Path, sqlite_store: FeatureStoreResource
) -> None:
    repo = full_repo(tmp_path)
    sqlite_store.apply(repo)
    summary = sqlite_store.materialize(repo, end=END)
    starts = {name: interval["start"] for name, interval in summary["intervals"].items()}
    assert starts == {"user_stats": "2019-12-04T00:00:00+00:00", "user_item": starts["user_stats"]}
    assert summary["rows_written"] == {"user_stats": 4, "user_item": 2}
    frame = assert_same_as_sdk(sqlite_store, repo, "ranking", REQUEST)
    assert_latest_values(frame)
    assert frame.columns.tolist() == [
        "user_id",
        "item_id",
        *(f"user_stats__{name}" for name, _ in USER_FEATURES),
        "user_item__clicks",
    ]


def test_historical_features_are_point_in_time(
    tmp_path: Path, sqlite_store: FeatureStoreResource
) -> None:
    repo = full_repo(tmp_path)
    sqlite_store.apply(repo)
    entity_df = pd.DataFrame(
        {
            "user_id": [1, 1, 2, 2],
            "item_id": ["a", "a", "b", "b"],
            "event_timestamp": [
                ts("2020-01-01 12:00"),  # sees day 1 only
                ts("2020-01-03"),  # sees day 2
                ts("2020-01-01"),  # before user 2's first row
                ts("2020-01-05"),  # the event-time tie: the later created row
            ],
        }
    )
    frame = sqlite_store.historical_features(repo, entity_df, "ranking")
    frame = frame.sort_values(["user_id", "event_timestamp"]).reset_index(drop=True)
    assert frame["user_stats__score"].iloc[[0, 1, 3]].tolist() == [1.0, 2.0, 3.0]
    assert pd.isna(frame["user_stats__score"].iloc[2])
    assert frame["user_stats__segment"].tolist() == ["a", "b", None, "c"]
    # lists come back from the offline store as numpy arrays
    assert [list(v) for v in frame["user_stats__item_ids"].iloc[[0, 1]]] == [[1, 2], [3]]
    assert frame["user_item__clicks"].iloc[[0, 1, 3]].tolist() == [5, 7, 6]
