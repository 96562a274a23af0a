"""The Feast repos, the request and the hand-checked answers the feature-store tests share.

Three test files (the registry and materialization, the online reads, the in-process cache) go
through the same two views over the same Parquet rows, so the rows, the repos built from them,
the request and the checks of its answers (equal to the SDK's, and to hand-checked values) are
defined once, here.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

from resources.feast_definitions import EntityDef, FeatureRepoDef, FeatureViewDef
from resources.feature_store import FeatureStoreResource

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
