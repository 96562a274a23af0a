"""FeatureStoreResource's fast online path, frame for frame against Feast's ``get_online_features``.

On the same store the fast path must give the SDK's frame exactly (values and dtypes): for
awkward requests, after a re-apply changes the views, for rows written before a feature existed,
and on a real redis-server as well as on SQLite.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from resources.feast_definitions import FeatureRepoDef, FeatureViewDef
from resources.feature_store import FeatureStoreResource
from tests.integration.feature_store_cases import (
    END,
    REQUEST,
    assert_latest_values,
    assert_same_as_sdk,
    full_repo,
    user_view,
    users_only_repo,
)


def test_online_read_edge_cases_match_the_sdk(
    tmp_path: Path, sqlite_store: FeatureStoreResource
) -> None:
    repo = full_repo(tmp_path)
    sqlite_store.apply(repo)
    sqlite_store.materialize(repo, end=END)
    cases = [
        REQUEST,
        REQUEST[["item_id", "user_id"]],  # key columns in another order
        pd.DataFrame({"user_id": [9, 10], "item_id": ["x", "y"]}),  # nothing known
        pd.DataFrame({"user_id": [2, 2, 2], "item_id": ["b", "b", "b"]}),  # one key, repeated
        REQUEST.iloc[:1],
        REQUEST.assign(request_id=[f"r{i}" for i in range(len(REQUEST))]),  # dropped
    ]
    for rows in cases:
        assert_same_as_sdk(sqlite_store, repo, "ranking", rows.reset_index(drop=True))
    assert_same_as_sdk(sqlite_store, repo, "users", pd.DataFrame({"user_id": [3, 1, 3]}))
    with pytest.raises(KeyError, match="item_id"):
        sqlite_store.online_features(repo, "ranking", pd.DataFrame({"user_id": [1]}))


def test_online_plan_follows_a_reapply(tmp_path: Path, sqlite_store: FeatureStoreResource) -> None:
    """A cached read plan is dropped when the registry changes: new views show up at once."""
    folder = tmp_path
    narrow = FeatureRepoDef("shop", full_repo(folder).views, {"ranking": ("user_stats",)})
    sqlite_store.apply(narrow)
    sqlite_store.materialize(narrow, end=END)
    before = assert_same_as_sdk(sqlite_store, narrow, "ranking", REQUEST)
    assert "user_item__clicks" not in before.columns

    wide = full_repo(folder)
    sqlite_store.apply(wide)
    after = assert_same_as_sdk(sqlite_store, wide, "ranking", REQUEST)
    assert after["user_item__clicks"].iloc[0] == 7.0


def test_feature_added_after_materialization_reads_as_null(
    tmp_path: Path, sqlite_store: FeatureStoreResource
) -> None:
    """Rows written before a feature existed lack it: both paths give nulls, not an error."""
    full = user_view(tmp_path)
    narrow = FeatureViewDef(
        name=full.name,
        entities=full.entities,
        features=full.features[:2],
        source_path=full.source_path,
        ttl=full.ttl,
    )
    sqlite_store.apply(FeatureRepoDef("shop", (narrow,), {"users": ("user_stats",)}))
    sqlite_store.materialize(FeatureRepoDef("shop", (narrow,), {"users": ("user_stats",)}), END)
    repo = users_only_repo(tmp_path)
    sqlite_store.apply(repo)
    frame = assert_same_as_sdk(sqlite_store, repo, "users", REQUEST[["user_id"]])
    assert frame["user_stats__score"].iloc[0] == 2.0
    assert frame["user_stats__segment"].isna().all()


def test_redis_round_trip(tmp_path: Path, redis_connection: str) -> None:
    resource = FeatureStoreResource(
        root=str(tmp_path / "feast"), online_store="redis", redis_connection=redis_connection
    )
    repo = full_repo(tmp_path)
    summary = resource.apply(repo)
    assert summary["online_store"] == "redis"
    resource.materialize(repo, end=datetime(2020, 1, 1, 12), start=datetime(2019, 12, 31))
    early = assert_same_as_sdk(resource, repo, "users", REQUEST[["user_id"]])
    assert early["user_stats__segment"].tolist()[:3] == ["a", None, None]

    summary = resource.materialize(repo, end=END)
    assert summary["intervals"]["user_stats"]["start"] == "2020-01-01T12:00:00+00:00"
    assert_latest_values(assert_same_as_sdk(resource, repo, "ranking", REQUEST))
    assert_same_as_sdk(resource, repo, "ranking", pd.DataFrame({"user_id": [9], "item_id": ["a"]}))
