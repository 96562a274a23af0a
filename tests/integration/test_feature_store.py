"""FeatureStoreResource against real Feast repos: registry, materialization, online and offline reads.

No mocks: every test builds Parquet files and a Feast repo under ``tmp_path`` and goes through
Feast's own registry, DuckDB offline store and SQLite or Redis online store. The fast online path
is checked against Feast's ``get_online_features`` on the same store, frame for frame (values and
dtypes), and against hand-checked values so that both cannot be wrong the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from feast.types import Array, Float64, Int64, String, UnixTimestamp
from feast.value_type import ValueType

from resources.feature_store import (
    EntityDef,
    FeatureRepoDef,
    FeatureStoreResource,
    FeatureViewDef,
)
from tests.redis_server import INSTALL_HINT, RedisServerNotInstalled, redis_server

USER = EntityDef("user", "user_id", "int")
ITEM = EntityDef("item", "item_id", "string")
USER_FEATURES = (
    ("score", "float"),
    ("visits", "int"),
    ("segment", "string"),
    ("last_seen", "timestamp"),
    ("item_ids", "int_list"),
    ("tags", "string_list"),
)
TTL = timedelta(days=30)
DAY1 = datetime(2020, 1, 1)
DAY2 = datetime(2020, 1, 2)
END = datetime(2020, 1, 3, tzinfo=UTC)


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text)


def user_frame() -> pd.DataFrame:
    """User 1 changes between day 1 and day 2; user 2 has two rows at the same event time, and
    the later-created one (listed first) must win; user 3 is all nulls but its timestamp; user 4
    has zero and empty values (falsy, yet not null)."""
    return pd.DataFrame(
        {
            "user_id": [1, 1, 2, 2, 3, 4],
            "event_timestamp": [DAY1, DAY2, DAY2, DAY2, DAY1, DAY2],
            "created_timestamp": [
                DAY1,
                DAY2,
                ts("2020-01-02 11:00"),
                ts("2020-01-02 10:00"),
                DAY1,
                DAY2,
            ],
            "score": [1.0, 2.0, 3.0, 4.0, None, 0.0],
            "visits": pd.array([1, 2, 3, 4, None, 0], dtype="Int64"),
            "segment": ["a", "b", "c", "d", None, ""],
            "last_seen": [ts("2019-12-31"), DAY1, None, DAY1, ts("2019-06-01"), ts("1970-01-01")],
            "item_ids": [[1, 2], [3], [], [4, 5], None, [0]],
            "tags": [["x"], ["y", "z"], [], ["w"], None, [""]],
        }
    )


def user_item_frame() -> pd.DataFrame:
    """Clicks per (user, item) pair, keyed by two entities of different types."""
    return pd.DataFrame(
        {
            "user_id": [1, 1, 2],
            "item_id": ["a", "a", "b"],
            "event_timestamp": [DAY1, DAY2, DAY2],
            "created_timestamp": [DAY1, DAY2, DAY2],
            "clicks": [5, 7, 6],
        }
    )


def user_view(folder: Path) -> FeatureViewDef:
    path = folder / "user_stats.parquet"
    if not path.exists():
        user_frame().to_parquet(path, index=False)
    return FeatureViewDef(
        name="user_stats",
        entities=(USER,),
        features=USER_FEATURES,
        source_path=str(path),
        ttl=TTL,
        description="per-user activity",
        tags={"team": "recsys"},
    )


def user_item_view(folder: Path) -> FeatureViewDef:
    path = folder / "user_item.parquet"
    if not path.exists():
        user_item_frame().to_parquet(path, index=False)
    return FeatureViewDef(
        name="user_item",
        entities=(USER, ITEM),
        features=(("clicks", "int"),),
        source_path=str(path),
        ttl=TTL,
    )


def full_repo(folder: Path) -> FeatureRepoDef:
    """Both views; ``ranking`` reads both, ``users`` only the user view."""
    views = (user_view(folder), user_item_view(folder))
    services = {"ranking": ("user_stats", "user_item"), "users": ("user_stats",)}
    return FeatureRepoDef(project="shop", views=views, services=services)


def users_only_repo(folder: Path) -> FeatureRepoDef:
    """The user view alone: what is left after ``user_item`` is dropped from the YAML."""
    return FeatureRepoDef(
        project="shop", views=(user_view(folder),), services={"users": ("user_stats",)}
    )


@pytest.fixture
def sqlite_store(tmp_path: Path) -> FeatureStoreResource:
    return FeatureStoreResource(root=str(tmp_path / "feast"))


@pytest.fixture(scope="module")
def redis_connection() -> Iterator[str]:
    """``host:port`` of a throwaway redis-server that lives as long as this module."""
    try:
        with redis_server() as connection:
            yield connection
    except RedisServerNotInstalled:
        pytest.skip(INSTALL_HINT)


# Unknown user 9 and item "zz", user 1 twice, user 3 with only nulls, user 4 with zeros.
REQUEST = pd.DataFrame(
    {"user_id": [1, 2, 3, 9, 1, 2, 4], "item_id": ["a", "b", "a", "zz", "a", "a", "a"]}
)


def assert_same_as_sdk(
    resource: FeatureStoreResource, repo: FeatureRepoDef, service: str, rows: pd.DataFrame
) -> pd.DataFrame:
    """The fast path's frame, after checking it equals the SDK's exactly."""
    fast = resource.online_features(repo, service, rows)
    sdk = resource.sdk_online_features(repo, service, rows)
    pd.testing.assert_frame_equal(fast, sdk, check_exact=True)
    return fast


def assert_latest_values(frame: pd.DataFrame) -> None:
    """Hand-checked online values for :data:`REQUEST` after materializing up to :data:`END`."""
    assert frame["user_id"].tolist() == [1, 2, 3, 9, 1, 2, 4]
    # latest row per user; user 2's event-time tie goes to the later created row
    score = frame["user_stats__score"]
    assert score.iloc[[0, 1, 4, 5, 6]].tolist() == [2.0, 3.0, 2.0, 3.0, 0.0]
    assert score.iloc[[2, 3]].isna().all()
    assert frame["user_stats__visits"].iloc[6] == 0
    assert frame["user_stats__segment"].tolist() == ["b", "c", None, None, "b", "c", ""]
    assert frame["user_stats__item_ids"].tolist() == [[3], [], None, None, [3], [], [0]]
    tags = [["y", "z"], [], None, None, ["y", "z"], [], [""]]
    assert frame["user_stats__tags"].tolist() == tags
    seen = frame["user_stats__last_seen"]
    assert seen.iloc[0] == pd.Timestamp("2020-01-01", tz="UTC")
    assert pd.isna(seen.iloc[1]) and pd.isna(seen.iloc[3])
    assert seen.iloc[2] == pd.Timestamp("2019-06-01", tz="UTC")
    clicks = frame["user_item__clicks"]
    assert clicks.iloc[[0, 1, 4]].tolist() == [7.0, 6.0, 7.0]
    assert clicks.iloc[[2, 3, 5, 6]].isna().all()


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


# --- the in-process cache of cached_views ----------------------------------------------------


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
