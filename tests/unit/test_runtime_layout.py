"""The naming conventions of ``runtime.layout`` are the ones the pipeline really uses."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from upath import UPath

from resources.parquet_io import ParquetIOManager
from runtime import layout
from runtime.layout import HomeLayout, home_location

DAYS = dg.DailyPartitionsDefinition(start_date="2025-01-01", end_date="2025-01-03")


def test_the_io_manager_writes_where_the_layout_says(tmp_path: Path) -> None:
    """Sensors read raw partitions by ``table_file``: it must be where the IO manager wrote."""
    key = layout.raw_events_key("demo")

    @dg.asset(key=key, partitions_def=DAYS)
    def raw_events(context) -> pd.DataFrame:  # unannotated: postponed hints reach Dagster as text
        return pd.DataFrame({"day": [context.partition_key]})

    @dg.asset(key=layout.split_plan_key("demo"))
    def split_plan() -> pd.DataFrame:
        return pd.DataFrame({"rows": [1]})

    places = HomeLayout(tmp_path)
    io_manager = ParquetIOManager(base_path=str(places.tables()))
    for day in DAYS.get_partition_keys():
        dg.materialize([raw_events], partition_key=day, resources={"io_manager": io_manager})
    dg.materialize([split_plan], resources={"io_manager": io_manager})
    for day in DAYS.get_partition_keys():
        assert pd.read_parquet(places.table_file(key, day)).day.tolist() == [day]
    assert places.table_file(layout.split_plan_key("demo")).is_file()


def test_home_location_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(layout.HOME_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert home_location() == str(tmp_path / layout.DEFAULT_HOME)
    monkeypatch.setenv(layout.HOME_ENV, "state")
    assert home_location() == str(tmp_path / "state")
    assert home_location("elsewhere") == str(tmp_path / "elsewhere")  # a flag beats the variable
    assert home_location("s3://bucket/home") == "s3://bucket/home"
    assert home_location(f"file://{tmp_path}/x") == str(tmp_path / "x")


def test_layout_on_local_and_remote_roots() -> None:
    local = HomeLayout(Path("/h"))
    assert local.request_log("fraud") == Path("/h/serving/fraud/request_log.sqlite")
    assert local.bundle("fraud") == Path("/h/serving/fraud/bundle")
    assert local.index("feed", "retrieval") == Path("/h/indices/feed/retrieval")
    assert local.quality(("feed", "features", "user")) == Path("/h/quality/feed/features/user")
    remote = HomeLayout(UPath("memory://h"))
    assert str(remote.feast_repo("feed")).endswith("h/feast/feed")


def test_feature_columns_round_trip() -> None:
    column = layout.feature_column(layout.attributes_view("user"), "country")
    assert column == "user_attributes__country"
    assert layout.is_feature_column(column) and not layout.is_feature_column("user_id")
    assert layout.feature_name(column) == "country"
    assert layout.feature_name("amount") == "amount"
    assert layout.registered_model_name("fraud", "scorer") == "fraud.scorer"
