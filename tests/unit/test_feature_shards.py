"""Sharded aggregates equal the one-query table, and the shard runner's settings and hash.

The fraud world's events (a few days, a few thousand cards) are aggregated once with today's
path and then in 2, 3 and 7 shards on the local engine: the tables must be equal row for row,
dtypes included. The execution settings resolve as documented, and a local run never imports Ray.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from assets.features.aggregates import (
    EVENT_TIMESTAMP,
    compute_aggregates,
    compute_aggregates_sharded,
    plan_aggregates,
)
from assets.features.feature_table_assets import compute_aggregate_table as sharded_table
from assets.features.views import compute_aggregate_table, feature_tables
from assets.raw.synthetic import build_world
from configs import CONFIG_DIR
from configs.schema import load_specs
from configs.schema.execution import ExecutionSpec
from configs.schema.source import FraudGeneratorParams
from runtime.shards import (
    ExecutionError,
    LocalEngine,
    resolve_execution,
    shard_codes,
    shard_count,
    split_frame,
    split_parquet,
)
from tests.unit.test_feature_aggregates import VIEW, _events

START = date(2025, 1, 1)
DAYS = 4
CREATED = pd.Timestamp("2025-02-01 00:00:00")


@pytest.fixture(scope="module")
def fraud():
    (spec,) = load_specs([CONFIG_DIR / "fraud.yaml"])
    params = FraudGeneratorParams(transactions_per_day=1500, n_cards=400, n_merchants=60)
    world = build_world(params, 0, START, DAYS)
    events = pd.concat(
        [world.events_for_day(START + timedelta(days=i)) for i in range(DAYS)], ignore_index=True
    )
    return spec, events


def assert_same_table(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Equal row for row with equal dtypes; keys, times, counts and lists exactly, float
    aggregates to 1e-12 relative: DuckDB's windowed sum adds in an order that depends on the
    other entities in the query (its segment tree), so the last bit of a sum may differ."""
    pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-12, atol=1e-9)
    exact = [c for c in expected if expected[c].dtype != "float64"]
    pd.testing.assert_frame_equal(got[exact], expected[exact], check_exact=True)


def _engine(tmp_path: Path, shards: int) -> LocalEngine:
    spec = ExecutionSpec(shards=shards, storage=str(tmp_path / "shared"))
    return LocalEngine(resolve_execution(spec, tmp_path, environ={}))


@pytest.mark.parametrize("shards", [2, 3, 7])
def test_fraud_tables_in_shards_equal_the_one_query_tables(fraud, tmp_path, shards) -> None:
    spec, events = fraud
    sharded_spec = spec.model_copy(
        update={"execution": ExecutionSpec(shards=shards, storage=str(tmp_path / "shared"))}
    )
    tables = [t for t in feature_tables(spec) if t.kind == "aggregates"]
    assert len(tables) == 2
    for table in tables:
        expected = compute_aggregate_table(spec, table, events, CREATED)
        got, results = sharded_table(sharded_spec, table, events, CREATED, str(tmp_path))
        assert len(results) == shards and sum(r.rows for r in results) == len(expected)
        assert {r.node for r in results} == {"local"}
        order = [*table.keys, EVENT_TIMESTAMP]
        assert_same_table(got, expected.sort_values(order, ignore_index=True))
    assert list((tmp_path / "shared").rglob("*.parquet")) == [], "shard files are removed"


def test_every_aggregate_kind_survives_the_shard_files(tmp_path) -> None:
    """``last_n`` lists, ``time_since_last`` timestamps, ratios and a delayed label axis."""
    events = _events(3)
    plans = plan_aggregates(VIEW, {"fraud": "label_time"}, "event_time")
    ratios = [(r.name, r.numerator, r.denominator) for r in VIEW.ratios]
    until = events.event_time.max()
    expected = compute_aggregates(events, ["user_id"], plans, CREATED, ratios, until)
    got, results = compute_aggregates_sharded(
        events, ["user_id"], plans, CREATED, _engine(tmp_path, 4), "t", ratios, until
    )
    assert 1 < len(results) <= 4  # six users: a shard may be empty, and is skipped
    assert_same_table(got, expected)


def test_one_local_shard_is_the_one_query_path(tmp_path) -> None:
    events = _events(1)
    plans = plan_aggregates(VIEW, {"fraud": "label_time"}, "event_time")
    engine = LocalEngine(resolve_execution(ExecutionSpec(), tmp_path, environ={}))
    got, results = compute_aggregates_sharded(events, ["user_id"], plans, CREATED, engine, "t")
    assert results == [] and not (tmp_path / "shards").exists()
    pd.testing.assert_frame_equal(got, compute_aggregates(events, ["user_id"], plans, CREATED))


def test_shards_hold_whole_entities_whatever_the_row_order(fraud, tmp_path) -> None:
    _, events = fraud
    shuffled = events.sample(frac=1.0, random_state=1)
    codes = pd.Series(shard_codes(events[["card_id"]], 5), index=events.index)
    again = pd.Series(shard_codes(shuffled[["card_id"]], 5), index=shuffled.index)
    pd.testing.assert_series_equal(codes, again.loc[events.index])
    assert codes.groupby(events.card_id).nunique().max() == 1
    assert codes.nunique() == 5


def test_the_hash_is_the_same_in_another_process(fraud) -> None:
    _, events = fraud
    keys = events[["card_id"]].head(200)
    script = (
        "import sys, pandas as pd; from runtime.shards import shard_codes;"
        "keys = pd.read_json(sys.stdin, orient='split');"
        "print(','.join(map(str, shard_codes(keys, 7))))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", script],
        input=keys.to_json(orient="split"),
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout.strip()
    assert out == ",".join(map(str, shard_codes(keys, 7)))


def test_streamed_split_of_parquet_files_equals_the_frame_split(fraud, tmp_path) -> None:
    _, events = fraud
    days = []
    for i, (_, day) in enumerate(events.groupby(events.event_time.dt.date)):
        days.append(tmp_path / f"day{i}.parquet")
        day.to_parquet(days[-1], index=False)
    from_frame = split_frame(events, ["card_id"], 3, tmp_path / "frame")
    from_files = split_parquet(days, ["card_id"], 3, tmp_path / "files", batch_rows=1000)
    assert [p.name for p in from_frame] == [p.name for p in from_files]
    for a, b in zip(from_frame, from_files, strict=True):
        left, right = pd.read_parquet(a), pd.read_parquet(b)
        key = ["card_id", "event_time", "transaction_id"]
        pd.testing.assert_frame_equal(
            left.sort_values(key, ignore_index=True), right.sort_values(key, ignore_index=True)
        )


def test_a_key_gets_one_shard_whether_or_not_its_batch_holds_a_null(tmp_path) -> None:
    """Read from Parquet, an integer key is ``float64`` in a batch with a null and ``int64`` in
    one without: the shard must follow the value, in every batch and in the frame split."""
    cards = list(range(1, 41))
    plain = pa.table({"card_id": pa.array(cards, pa.int64()), "day": [0] * 40})
    holed = pa.table({"card_id": pa.array([None, *cards[:20], None], pa.int64()), "day": [1] * 22})
    days = [tmp_path / "plain.parquet", tmp_path / "holed.parquet"]
    pq.write_table(plain, days[0])
    pq.write_table(holed, days[1])
    files = split_parquet(days, ["card_id"], 5, tmp_path / "files", batch_rows=16)
    whole = pd.read_parquet(days)  # one frame: card_id is float64 here
    frames = split_frame(whole, ["card_id"], 5, tmp_path / "frame")
    shard_of: dict[tuple[str, int], set[str]] = {}
    for path in [*files, *frames]:
        for card in pd.read_parquet(path)["card_id"].dropna().astype(int):
            shard_of.setdefault((path.parent.name, card), set()).add(path.name)
    for card in cards:
        (by_files,) = shard_of[("files", card)]  # one shard, both days' batches
        assert shard_of[("frame", card)] == {by_files}


def test_execution_settings_resolve_as_documented(tmp_path) -> None:
    default = resolve_execution(ExecutionSpec(), tmp_path, environ={})
    assert default.engine == "local" and default.address is None
    assert default.storage == (tmp_path / "shards").absolute()
    from_env = resolve_execution(ExecutionSpec(), tmp_path, environ={"RAY_ADDRESS": "h:6379"})
    assert (from_env.engine, from_env.address, from_env.address_setting) == (
        "ray",
        "h:6379",
        "RAY_ADDRESS",
    )
    yaml_wins = resolve_execution(
        ExecutionSpec(address="head:1"), tmp_path, environ={"RAY_ADDRESS": "h:6379"}
    )
    assert (yaml_wins.address, yaml_wins.address_setting) == ("head:1", "execution.address")
    pinned = resolve_execution(
        ExecutionSpec(engine="local"), tmp_path, environ={"RAY_ADDRESS": "h:6379"}
    )
    assert pinned.engine == "local"
    with pytest.raises(ExecutionError, match="execution.address or RAY_ADDRESS"):
        resolve_execution(ExecutionSpec(engine="ray"), tmp_path, environ={})
    with pytest.raises(ExecutionError, match="execution.storage: the home 's3://b/h'"):
        resolve_execution(ExecutionSpec(engine="ray", address="h:1"), "s3://b/h", environ={})
    assert resolve_execution(ExecutionSpec(), "s3://b/h", environ={}).storage.is_absolute()
    with pytest.raises(ValidationError, match="folder path every node mounts"):
        ExecutionSpec(storage="s3://bucket/shards")
    with pytest.raises(ValidationError, match="from 1 to 4096"):
        ExecutionSpec(shards=0)


def test_auto_shard_count_follows_size_and_cluster(tmp_path) -> None:
    local = resolve_execution(ExecutionSpec(), tmp_path, environ={})
    ray = resolve_execution(ExecutionSpec(engine="ray", address="h:1"), tmp_path, environ={})
    assert [shard_count(local, n) for n in (10, 500_000, 500_001, 2_000_000)] == [1, 1, 2, 4]
    assert shard_count(ray, 10, cluster_cpus=4) == 4
    assert shard_count(ray, 3_000_000, cluster_cpus=2) == 6


def test_a_local_run_never_imports_ray(tmp_path) -> None:
    script = f"""
import sys
from tests.unit.test_feature_shards import fraud_spec_and_events, CREATED
from assets.features.feature_table_assets import compute_aggregate_table
from assets.features.views import feature_tables
spec, events = fraud_spec_and_events()
table = next(t for t in feature_tables(spec) if t.kind == "aggregates")
frame, results = compute_aggregate_table(spec, table, events, CREATED, {str(tmp_path)!r})
assert len(frame) > 0 and results == []
print("ray" in sys.modules)
"""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == "False", out.stderr


def fraud_spec_and_events():
    """A small fraud world (for the subprocess above)."""
    (spec,) = load_specs([CONFIG_DIR / "fraud.yaml"])
    params = FraudGeneratorParams(transactions_per_day=300, n_cards=100, n_merchants=20)
    world = build_world(params, 0, START, 2)
    events = pd.concat([world.events_for_day(START + timedelta(days=i)) for i in range(2)])
    return spec, events.reset_index(drop=True)


def test_split_of_a_log_without_rows_is_one_empty_shard_with_the_columns(tmp_path) -> None:
    """An empty log still gives the stage one input, so its output has the table's columns."""
    days = []
    for day in range(2):
        days.append(tmp_path / f"day-{day}.parquet")
        pd.DataFrame({"card_id": pd.Series([], dtype="int64"), "amount": []}).to_parquet(
            days[-1], index=False
        )
    (only,) = split_parquet(days, ["card_id"], 4, tmp_path / "out", numbered="row")
    read = pd.read_parquet(only)
    assert only.name == "input-00000.parquet" and read.empty
    assert list(read.columns) == ["card_id", "amount", "row"]
