"""The point-in-time join in shards equals the one-pass join and the brute-force oracle.

The oracle's data (:mod:`tests.unit.pit_join_cases`) plants every edge a PIT join gets wrong:
ties, TTL boundaries, rows at and just after the as-of time, null keys on both sides, duplicate
label rows, tz-aware and naive times; its two tables share ``user_id`` (one adds ``region``), so
they join in one sharded pass. Views on unrelated keys join group by group.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from assets.training.pit_join import FeatureTable, point_in_time_join
from assets.training.sharded_join import (
    CHUNK_ROWS,
    Sharding,
    join_groups,
    plan_sharding,
    sharded_join_chunks,
)
from configs.schema.execution import ExecutionSpec
from runtime.shards import LocalEngine, resolve_execution
from tests.unit.pit_join_cases import (
    FEATURE_COLUMNS,
    ORACLE_CASES,
    _assert_same,
    _expected,
    _tables,
    make_data,
)


def sharded_point_in_time_join(
    labels: pd.DataFrame, tables: list, sharding: Sharding, *args, **kwargs
) -> tuple[pd.DataFrame, list]:
    """The chunks of :func:`sharded_join_chunks` laid end to end, and the shard runs."""
    with sharded_join_chunks(labels, tables, sharding, *args, **kwargs) as (chunks, results):
        return pd.concat(list(chunks)), results


def _sharding(tmp_path: Path, shards: int) -> Sharding:
    spec = ExecutionSpec(shards=shards, storage=str(tmp_path / "shared"))
    engine = LocalEngine(resolve_execution(spec, tmp_path, environ={}))
    sharding = plan_sharding(engine, 1, "test/join")
    assert sharding is not None and sharding.shards == shards
    return sharding


@pytest.mark.parametrize(("seed", "lag_us", "unit"), ORACLE_CASES[::2])
@pytest.mark.parametrize(("shards", "chunk_rows"), [(3, CHUNK_ROWS), (8, CHUNK_ROWS), (3, 37)])
def test_sharded_join_matches_one_pass_and_oracle(
    seed, lag_us, unit, shards, chunk_rows, tmp_path
) -> None:
    """Also read back 37 label rows at a time: chunks laid end to end are the one-pass frame,
    dtypes included (a chunk without a null in a column the whole has nulls in is typed as
    the whole)."""
    labels, user, pair = make_data(seed, lag_us, unit)
    one_pass = point_in_time_join(labels, _tables(user, pair), prefix_features=True)
    got, runs = sharded_point_in_time_join(
        labels,
        _tables(user, pair),
        _sharding(tmp_path, shards),
        prefix_features=True,
        chunk_rows=chunk_rows,
    )
    pd.testing.assert_frame_equal(got, one_pass, check_exact=True)
    _assert_same(got, _expected(labels, user, pair), ["row_id", *FEATURE_COLUMNS])
    assert len(runs) == shards  # both tables in one pass over user_id
    assert not list((tmp_path / "shared").rglob("*.parquet")), "shard files are removed"


def test_parquet_tables_and_a_labelled_index(tmp_path) -> None:
    labels, user, pair = make_data(1)
    labels.index = labels.index * 10 + 7  # the labels' own index comes back
    user_path, pair_path = str(tmp_path / "user.parquet"), str(tmp_path / "pair.parquet")
    user.to_parquet(user_path)
    pair.to_parquet(pair_path)
    tables = _tables(user_path, pair_path)
    got, _ = sharded_point_in_time_join(labels, tables, _sharding(tmp_path, 4), "event_timestamp")
    pd.testing.assert_frame_equal(got, point_in_time_join(labels, tables), check_exact=True)


@pytest.mark.parametrize("chunk_rows", [CHUNK_ROWS, 50])
def test_views_on_unrelated_keys_join_group_by_group(tmp_path, chunk_rows) -> None:
    """Cards and merchants: two groups, each cut by its own key; int32 keys in one table. Read
    back 50 label rows at a time, some chunks have no null in an integer or boolean feature
    the whole answer has nulls in: they must come typed as the whole (nullable), not as numpy."""
    rng = np.random.default_rng(0)
    n = 3_000
    start = pd.Timestamp("2025-01-01")
    labels = pd.DataFrame(
        {
            "card": rng.integers(0, 300, n),
            "merchant": rng.integers(0, 40, n),
            "as_of": start + pd.to_timedelta(rng.integers(0, 10 * 86_400, n), "s"),
        }
    )

    def rows(key: str, entities: int, dtype: str) -> pd.DataFrame:
        m = 20_000
        event = start + pd.to_timedelta(rng.integers(0, 10 * 86_400, m), "s")
        return pd.DataFrame(
            {
                key: rng.integers(0, entities, m).astype(dtype),
                "event_timestamp": event,
                "created_timestamp": event + pd.to_timedelta(rng.integers(0, 5, m), "s"),
                f"{key}_value": rng.normal(size=m),
                f"{key}_count": rng.integers(0, 100, m),
                f"{key}_flag": rng.random(m) < 0.5,
            }
        )

    day = datetime.timedelta(days=1)
    tables = [
        FeatureTable("cards", rows("card", 300, "int64"), ("card",), ("card_value",), day),
        FeatureTable(
            "merchants",
            rows("merchant", 40, "int32"),
            ("merchant",),
            ("merchant_value", "merchant_count"),
            day,
        ),
        FeatureTable(
            "cards_too", rows("card", 300, "int64"), ("card",), ("card_count", "card_flag"), day
        ),
    ]
    groups = join_groups(tables)
    assert [(g.shard_keys, g.tables) for g in groups] == [
        (("card",), (0, 2)),
        (("merchant",), (1,)),
    ]
    expected = point_in_time_join(labels, tables, "as_of", prefix_features=True)
    got, runs = sharded_point_in_time_join(
        labels, tables, _sharding(tmp_path, 5), "as_of", True, chunk_rows
    )
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    assert len(runs) == 10  # five shards per group
    assert expected["merchants__merchant_value"].notna().mean() > 0.9
    for column in ("cards_too__card_count", "cards_too__card_flag"):
        nulls = expected[column].isna().to_numpy()
        assert str(expected[column].dtype) in {"Int64", "boolean"}, column
        if chunk_rows < len(labels):  # some chunks with nulls, some without
            by_chunk = nulls[: len(nulls) // chunk_rows * chunk_rows].reshape(-1, chunk_rows)
            assert by_chunk.any(axis=1).any() and not by_chunk.any(axis=1).all(), column
    with sharded_join_chunks(
        labels, tables, _sharding(tmp_path / "again", 5), "as_of", True, chunk_rows
    ) as (chunks, _):
        for chunk in chunks:  # each chunk alone is typed as the whole answer
            pd.testing.assert_series_equal(chunk.dtypes, expected.dtypes)


def test_bad_names_fail_before_any_shard(tmp_path) -> None:
    labels, user, pair = make_data(0)
    with pytest.raises(ValueError, match="labels lack join key"):
        sharded_point_in_time_join(
            labels.drop(columns="region"), _tables(user, pair), _sharding(tmp_path, 2)
        )
    assert not (tmp_path / "shared").exists()
