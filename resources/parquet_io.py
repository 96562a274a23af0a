"""Parquet storage for tables, one file per asset or per daily partition, under the home directory.

Built on Dagster's ``UPathIOManager`` so the same code writes to a local folder or ``s3://``.
Two things are added:

* Writes are atomic: a file is written beside its target and renamed over it, so a failed or
  interrupted run never leaves a half-written or deleted earlier materialization.
* One output may cover several daily partitions (a single-run backfill): the asset returns
  ``{partition_key: frame}`` and each partition gets its own file. Downstream inputs always get
  one DataFrame, the partitions concatenated in key order.
"""

from __future__ import annotations

import uuid
from typing import Any

import dagster as dg
import pandas as pd
from upath import UPath

from resources.home import home_layout


class PartitionedParquetIOManager(dg.UPathIOManager):
    """Reads and writes pandas DataFrames as Parquet under ``base_path``."""

    extension = ".parquet"

    def dump_to_path(self, context: dg.OutputContext, obj: pd.DataFrame, path: UPath) -> None:
        if not isinstance(obj, pd.DataFrame):
            raise TypeError(
                f"{context.asset_key.to_user_string()}: expected a DataFrame, got {type(obj)}"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        with staging.open("wb") as handle:
            obj.to_parquet(handle, index=False)
        staging.rename(path)

    def load_from_path(self, context: dg.InputContext, path: UPath) -> pd.DataFrame:
        with path.open("rb") as handle:
            return pd.read_parquet(handle)

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if not (context.has_asset_partitions and isinstance(obj, dict)):
            super().handle_output(context, obj)
            return
        paths = self._get_paths_for_partitions(context)
        unexpected = set(obj) - set(paths)
        if unexpected:
            raise ValueError(
                f"output has partitions {sorted(unexpected)} outside this run's {sorted(paths)}"
            )
        for key in sorted(obj):
            self.dump_to_path(context, obj[key], paths[key])
        rows = sum(len(frame) for frame in obj.values())
        context.add_output_metadata({"partitions_written": len(obj), "rows_written": rows})

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        loaded = super().load_input(context)
        if isinstance(loaded, dict):
            frames = [loaded[key] for key in sorted(loaded)]
            return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        return loaded


class ParquetIOManager(dg.ConfigurableIOManagerFactory):
    """Configurable entry point: ``base_path`` defaults to ``<home>/tables``."""

    base_path: str | None = None

    def create_io_manager(self, context: dg.InitResourceContext) -> PartitionedParquetIOManager:
        base = UPath(self.base_path) if self.base_path else home_layout().tables()
        return PartitionedParquetIOManager(base_path=base)
