"""Point-in-time join against Feast's DuckDB offline store, the reference the issue trusts.

A throwaway Feast repo over the same planted data (:mod:`tests.unit.pit_join_cases`), with the
same TTLs, answers ``get_historical_features``; the join must agree on every row.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pandas as pd
import pytest

from assets.training.pit_join import point_in_time_join
from tests.unit.pit_join_cases import (
    FEATURE_COLUMNS,
    TTL_PAIR,
    TTL_USER,
    _assert_same,
    _tables,
    make_data,
)

FEATURE_STORE_YAML = """
project: pit
provider: local
registry: {root}/registry.db
online_store:
  type: sqlite
  path: {root}/online.db
offline_store:
  type: duckdb
entity_key_serialization_version: 3
"""


def _feast_objects(root: Path) -> list[object]:
    """Two entities, two file sources, two views with the same TTLs as ours."""
    from feast import Entity, FeatureView, Field, FileSource
    from feast.types import Float64, Int64, String

    user = Entity(name="user", join_keys=["user_id"])
    region = Entity(name="region", join_keys=["region"])
    views = []
    for name, entities, stem, ttl in (
        ("users", [user], "u", TTL_USER),
        ("pairs", [user, region], "p", TTL_PAIR),
    ):
        source = FileSource(
            name=f"{name}_source",
            path=str(root / f"{name}.parquet"),
            timestamp_field="event_timestamp",
            created_timestamp_column="created_timestamp",
        )
        schema = [
            Field(name=f"{stem}_float", dtype=Float64),
            Field(name=f"{stem}_int", dtype=Int64),
            Field(name=f"{stem}_str", dtype=String),
        ]
        views.append(
            FeatureView(name=name, entities=entities, ttl=ttl, schema=schema, source=source)
        )
    return [user, region, *views]


def test_matches_feast_duckdb_store(tmp_path: Path) -> None:
    """Feast 0.67's DuckDB offline store is the reference the issue trusts; we must agree.

    Feast compares keys with SQL equality too, so null keys match nothing on both sides.
    """
    feast = pytest.importorskip("feast")
    labels, user, pair = make_data(4, 10**5)
    # Feast's file source wants one timestamp convention per column; UTC throughout
    for frame in (user, pair):
        for column in ("event_timestamp", "created_timestamp"):
            frame[column] = pd.to_datetime(frame[column], utc=True)
    user.to_parquet(tmp_path / "users.parquet")
    pair.to_parquet(tmp_path / "pairs.parquet")
    (tmp_path / "feature_store.yaml").write_text(
        textwrap.dedent(FEATURE_STORE_YAML.format(root=tmp_path)).lstrip()
    )
    store = feast.FeatureStore(repo_path=str(tmp_path))
    store.apply(_feast_objects(tmp_path))
    refs = [c.replace("__", ":") for c in FEATURE_COLUMNS]
    theirs = store.get_historical_features(
        entity_df=labels, features=refs, full_feature_names=True
    ).to_df()
    ours = point_in_time_join(labels, _tables(user, pair), prefix_features=True)
    assert len(theirs) == len(ours)
    theirs = theirs.sort_values("row_id").reset_index(drop=True)
    _assert_same(ours, theirs, ["row_id", *FEATURE_COLUMNS])
