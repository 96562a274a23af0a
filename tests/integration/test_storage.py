"""The Parquet IO manager: per-partition files, atomic writes, and non-local fsspec paths."""

import dagster as dg
import pandas as pd
import pytest
from upath import UPath

from resources.parquet_io import ParquetIOManager

pytestmark = pytest.mark.integration

DAYS = dg.DailyPartitionsDefinition(start_date="2025-01-01", end_date="2025-01-04")


@dg.asset(partitions_def=DAYS, backfill_policy=dg.BackfillPolicy.single_run())
def daily(context: dg.AssetExecutionContext) -> dict[str, pd.DataFrame]:
    return {key: pd.DataFrame({"day": [key] * 2, "x": [1, 2]}) for key in context.partition_keys}


@dg.asset
def combined(daily: pd.DataFrame) -> pd.DataFrame:
    return daily.groupby("day", as_index=False).x.sum()


def test_range_run_writes_a_file_per_partition_on_fsspec_memory() -> None:
    base = "memory://playbook-test/tables"
    io = ParquetIOManager(base_path=base)
    result = dg.materialize(
        [daily, combined],
        resources={"io_manager": io},
        instance=dg.DagsterInstance.ephemeral(),
        tags={
            "dagster/asset_partition_range_start": "2025-01-01",
            "dagster/asset_partition_range_end": "2025-01-03",
        },
    )
    assert result.success
    files = sorted(p.name for p in (UPath(base) / "daily").iterdir())
    assert files == ["2025-01-01.parquet", "2025-01-02.parquet", "2025-01-03.parquet"]
    assert result.asset_value("combined").x.tolist() == [3, 3, 3]
    single = dg.materialize(
        [daily],
        partition_key="2025-01-02",
        resources={"io_manager": io},
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert single.success
