"""FeatureStoreResource's in-process cache of ``cached_views``, on SQLite and on Redis.

A cached view must answer exactly as the SDK does, reload once a materialization (by this
process or another) changes the registry, cache only the views named, and hand out copies.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from resources.feast_definitions import FeatureRepoDef
from resources.feature_store import FeatureStoreResource
from tests.integration.feature_store_cases import (
    DAY1,
    END,
    REQUEST,
    assert_latest_values,
    assert_same_as_sdk,
    full_repo,
    user_frame,
    users_only_repo,
)


@pytest.fixture(params=["sqlite", "redis"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return request.param


def cached_resource(
    request: pytest.FixtureRequest, tmp_path: Path, kind: str, cached_views: list[str]
) -> FeatureStoreResource:
    """A resource on SQLite or on the module's redis-server, caching ``cached_views``."""
    if kind == "sqlite":
        return FeatureStoreResource(root=str(tmp_path / "feast"), cached_views=cached_views)
    return FeatureStoreResource(
        root=str(tmp_path / "feast"),
        online_store="redis",
        redis_connection=request.getfixturevalue("redis_connection"),
        cached_views=cached_views,
    )


def own_project(repo: FeatureRepoDef, request: pytest.FixtureRequest) -> FeatureRepoDef:
    """``repo`` under a project of its own: the Redis server outlives each test."""
    name = "".join(c if c.isalnum() else "_" for c in request.node.name)
    return replace(repo, project=name)


def cache_keys(resource: FeatureStoreResource, project: str, service: str) -> dict[str, set]:
    """The entity keys each view's cache holds (loaded by a read first)."""
    reader = resource._reader(project)
    plan = reader.plan(service)
    return {view.view.name: set(reader.view_cache(view).rows) for view in plan.views}


def test_cached_reads_match_the_sdk(
    tmp_path: Path, request: pytest.FixtureRequest, store_kind: str
) -> None:
    resource = cached_resource(request, tmp_path, store_kind, ["*"])
    repo = own_project(full_repo(tmp_path), request)
    resource.apply(repo)
    resource.materialize(repo, end=END)
    reader = resource._reader(repo.project)
    assert reader.is_cached("user_stats") and reader.is_cached("user_item")
    assert_latest_values(assert_same_as_sdk(resource, repo, "ranking", REQUEST))
    cases = [
        REQUEST[["item_id", "user_id"]],
        pd.DataFrame({"user_id": [9, 10], "item_id": ["x", "y"]}),  # nothing known
        pd.DataFrame({"user_id": [2, 2, 2], "item_id": ["b", "b", "b"]}),  # one key, repeated
        REQUEST.iloc[:1],
        REQUEST.assign(request_id=[f"r{i}" for i in range(len(REQUEST))]),
    ]
    for rows in cases:
        assert_same_as_sdk(resource, repo, "ranking", rows.reset_index(drop=True))
    assert_same_as_sdk(resource, repo, "users", pd.DataFrame({"user_id": [3, 1, 3, 9]}))
    # no rows at all (the SDK refuses them): as the uncached path answers
    uncached = cached_resource(request, tmp_path, store_kind, [])
    pd.testing.assert_frame_equal(
        resource.online_features(repo, "ranking", REQUEST.iloc[:0]),
        uncached.online_features(repo, "ranking", REQUEST.iloc[:0]),
        check_exact=True,
    )
    # the entities with a value: user 3 (only last_seen) is held, unknown 9 is not
    assert cache_keys(resource, repo.project, "ranking") == {
        "user_stats": {1, 2, 3, 4},
        "user_item": {(1, "a"), (2, "b")},
    }
    with pytest.raises(KeyError, match="item_id"):
        resource.online_features(repo, "ranking", pd.DataFrame({"user_id": [1]}))


def test_cache_is_reloaded_after_a_materialization(
    tmp_path: Path, request: pytest.FixtureRequest, store_kind: str
) -> None:
    """Materializing records an interval in the registry file: the next read reloads."""
    resource = cached_resource(request, tmp_path, store_kind, ["user_stats"])
    repo = own_project(users_only_repo(tmp_path), request)
    resource.apply(repo)
    resource.materialize(repo, end=datetime(2020, 1, 1, 12, tzinfo=UTC), start=DAY1)
    early = assert_same_as_sdk(resource, repo, "users", REQUEST[["user_id"]])
    assert early["user_stats__score"].iloc[0] == 1.0  # day 1
    assert cache_keys(resource, repo.project, "users") == {"user_stats": {1, 3}}

    # another resource (as another process would) materializes day 2
    other = cached_resource(request, tmp_path, store_kind, [])
    other.materialize(repo, end=END)
    late = assert_same_as_sdk(resource, repo, "users", REQUEST[["user_id"]])
    assert late["user_stats__score"].iloc[[0, 1]].tolist() == [2.0, 3.0]
    assert cache_keys(resource, repo.project, "users") == {"user_stats": {1, 2, 3, 4}}

    # new values in the source, materialized incrementally
    frame = user_frame()
    frame = pd.concat([frame, frame.iloc[[1]].assign(event_timestamp=END, score=7.5)])
    frame.assign(created_timestamp=frame["event_timestamp"]).to_parquet(
        tmp_path / "user_stats.parquet", index=False
    )
    resource.materialize(repo, end=END + timedelta(days=1))
    newest = assert_same_as_sdk(resource, repo, "users", REQUEST[["user_id"]])
    assert newest["user_stats__score"].iloc[[0, 4]].tolist() == [7.5, 7.5]


def test_only_named_views_are_cached_and_values_are_copies(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    resource = cached_resource(request, tmp_path, "sqlite", ["user_stats"])
    repo = full_repo(tmp_path)
    resource.apply(repo)
    resource.materialize(repo, end=END)
    reader = resource._reader(repo.project)
    assert reader.is_cached("user_stats") and not reader.is_cached("user_item")
    first = assert_same_as_sdk(resource, repo, "ranking", REQUEST)
    first["user_stats__item_ids"].iloc[0].append(99)  # a caller mutating a returned list
    assert_latest_values(assert_same_as_sdk(resource, repo, "ranking", REQUEST))
