"""The aggregate feature assets, out of core: the raw files in, one file out, shard by shard.

The small fraud world's ``raw_events`` are materialized, then its aggregate tables in 3 shards
(the log is never loaded whole, the table never held whole). Each written table must hold the
rows of the one-query computation on the whole log, its metadata must be what the whole table
gives, its quality check what the whole-table suite gives, and a failed run must leave the
earlier file byte for byte.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow as pa
import pytest
from upath import UPath

from assets.features.table_files import staged_parquet
from assets.features.views import compute_aggregate_table, feature_tables
from assets.metadata import table_metadata
from assets.quality.suites import TableRole
from assets.quality.validation import run_quality
from configs.schema.execution import ExecutionSpec
from dagster_project.loader import resources, use_case_assets
from dagster_project.use_case_files import load_use_cases
from runtime import layout
from tests.integration.test_raw_assets import _run, _small
from tests.unit.test_feature_shards import assert_same_table

pytestmark = pytest.mark.integration
SHARDS = 3


@pytest.fixture(scope="module")
def fraud(tmp_path_factory):
    """Raw events of the small fraud world, then its aggregate tables in 3 shards."""
    from configs import CONFIG_DIR

    (spec,) = load_use_cases([CONFIG_DIR / "fraud.yaml"])
    home = tmp_path_factory.mktemp("fraud")
    spec = _small(spec).model_copy(
        update={"execution": ExecutionSpec(shards=SHARDS, storage=str(home / "shared"))}
    )
    instance = dg.DagsterInstance.ephemeral()
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("RAY_ADDRESS", raising=False)
        assert _run(spec, home, select="raw_events", instance=instance).success
        result = _materialize(spec, home, instance)
    assert result.success
    return spec, home, instance, result


def _tables(spec):
    return [t for t in feature_tables(spec) if t.kind == "aggregates"]


def _materialize(spec, home: Path, instance, **kwargs) -> dg.ExecuteInProcessResult:
    keys = [dg.AssetKey(layout.feature_table_key(spec.name, t.name)) for t in _tables(spec)]
    return dg.materialize(
        use_case_assets(spec),
        selection=keys,
        resources=resources(UPath(home)),
        instance=instance,
        **kwargs,
    )


def _events(home: Path) -> pd.DataFrame:
    days = sorted((home / "tables" / "fraud" / "raw_events").glob("*.parquet"))
    return pd.concat([pd.read_parquet(p) for p in days], ignore_index=True)


def _metadata(result, table) -> dict:
    key = dg.AssetKey(layout.feature_table_key("fraud", table.name))
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key == key]
    return event.materialization.metadata


def test_tables_hold_the_rows_of_the_whole_log_query(fraud) -> None:
    spec, home, _, result = fraud
    events = _events(home)
    for table in _tables(spec):
        metadata = _metadata(result, table)
        assert metadata["execution"].value == f"local, {SHARDS} shards on 1 node(s)"
        written = pd.read_parquet(metadata["path"].value)
        created = written["created_timestamp"].iloc[0]
        expected = compute_aggregate_table(spec, table, events, created)
        order = [*table.keys, "event_timestamp"]
        assert_same_table(
            written.sort_values(order, ignore_index=True),
            expected.sort_values(order, ignore_index=True),
        )
    assert not list((home / "shared").rglob("*.parquet")), "shard files are cleaned up"


def test_metadata_and_quality_are_the_whole_tables(fraud) -> None:
    spec, home, _, result = fraud
    checks = {c.asset_key: c for c in result.get_asset_check_evaluations()}
    for table in _tables(spec):
        metadata = _metadata(result, table)
        whole = pd.read_parquet(metadata["path"].value)
        expected = table_metadata(whole, "event_timestamp")
        for name in ("dagster/row_count", "time_min", "time_max", "null_rates"):
            got = metadata.get(name)
            want = expected.get(name)
            assert (got.value if got is not None else None) == getattr(want, "value", want), name
        assert metadata["entities"].value == whole[list(table.keys)].drop_duplicates().shape[0]
        report = run_quality(
            whole,
            suite_name="t",
            role=TableRole.FEATURES,
            spec=spec.quality,
            feature_columns=table.feature_names,
            docs_dir=home / "whole-docs",
        )
        check = checks[dg.AssetKey(layout.feature_table_key(spec.name, table.name))]
        assert check.passed == report.success
        assert check.metadata["expectations"].value == len(report.outcomes)
        assert check.metadata["failed"].value == len(report.failures())
        assert Path(check.metadata["data_docs"].value).is_file()


def test_hopped_windows_through_the_asset(fraud, tmp_path) -> None:
    """merchant_risk with Chronon's hops (``hop: auto``, ttl 31d) in its own home: the asset's
    file holds the whole-log query's rows for that view, fewer than with exact windows, and
    its metadata says how the windows move and how many rows an event made."""
    spec, home, _, result = fraud
    exact_view = spec.features["merchant_risk"]
    view = type(exact_view).model_validate({**exact_view.model_dump(), "hop": "auto", "ttl": "31d"})
    hopped = spec.model_copy(update={"features": {**spec.features, "merchant_risk": view}})
    raw = Path("tables") / "fraud" / "raw_events"
    shutil.copytree(home / raw, tmp_path / raw)
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("RAY_ADDRESS", raising=False)
        run = _materialize(hopped, tmp_path, dg.DagsterInstance.ephemeral())
    assert run.success
    (table,) = [t for t in _tables(hopped) if t.view == "merchant_risk"]
    metadata = _metadata(run, table)
    assert metadata["windows"].value == "1d hop 1h, 7d hop 1h, 30d hop 1d"
    written = pd.read_parquet(metadata["path"].value)
    events = _events(home)
    expected = compute_aggregate_table(hopped, table, events, written["created_timestamp"].iloc[0])
    order = [*table.keys, "event_timestamp"]
    assert_same_table(
        written.sort_values(order, ignore_index=True),
        expected.sort_values(order, ignore_index=True),
    )
    exact = pd.read_parquet(_metadata(result, table)["path"].value)
    assert len(written) < 0.85 * len(exact)  # 15,834 rows against 19,987 (0.79x) when written
    assert _metadata(result, table)["windows"].value == "1d exact, 7d exact, 30d exact"
    assert metadata["rows_per_event"].value == pytest.approx(len(written) / len(events))


def test_a_failed_run_leaves_the_earlier_table_byte_for_byte(fraud, tmp_path) -> None:
    spec, home, instance, _ = fraud
    (table, *_) = _tables(spec)
    target = home / "tables" / "fraud" / "features" / f"{table.name}.parquet"
    before = target.read_bytes()
    # every day loses a column an aggregate reads: the shard function raises on each shard
    folder = home / "tables" / "fraud" / "raw_events"
    saved = {p: p.read_bytes() for p in folder.glob("*.parquet")}
    try:
        for path in saved:
            pd.read_parquet(path).drop(columns="amount").to_parquet(path, index=False)
        failed = _materialize(spec, home, instance, raise_on_error=False)
    finally:
        for path, data in saved.items():
            path.write_bytes(data)
    assert not failed.success
    assert target.read_bytes() == before
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".")], "no staging left"


def test_a_staged_write_that_fails_keeps_the_target(tmp_path) -> None:
    target = UPath(tmp_path / "table.parquet")
    table = pa.table({"a": [1, 2, 3]})
    with staged_parquet(target, table.schema) as writer:
        writer.write_table(table)
    before = target.read_bytes()
    with pytest.raises(RuntimeError), staged_parquet(target, table.schema) as writer:
        writer.write_table(pa.table({"a": [4]}))
        raise RuntimeError("a shard failed after the first was written")
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.parquet"]
