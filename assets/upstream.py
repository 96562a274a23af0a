"""Where an upstream asset's latest materialization lives, for consumers that read files directly.

Feast file sources and the point-in-time join scan Parquet files with DuckDB rather than loading a
DataFrame through the IO manager (only the needed columns are read, never a pandas copy), so they
need the file's path: the ``path`` metadata Dagster's UPath IO manager records on every output.
A stage that reads an upstream table in parts (a training set by split) takes it from its place
in the home instead (:func:`home_table_file`), so a run that materializes that stage alone needs
no earlier run's record in the instance.
"""

import dagster as dg
from upath import UPath

from runtime.layout import HomeLayout


def home_table_file(places: HomeLayout, key: dg.AssetKey) -> UPath:
    """The Parquet file ``key`` is written to in the home (the IO manager's place for it); a
    missing one fails the run, naming what to materialize."""
    path = places.table_file(tuple(key.path))
    if not path.exists():
        raise dg.Failure(f"{key.to_user_string()}: no file at {path}; materialize it first")
    return path


def materialized_path(context: dg.AssetExecutionContext, key: dg.AssetKey) -> str:
    """The path the latest materialization of ``key`` was written to."""
    event = context.instance.get_latest_materialization_event(key)
    if event is None or event.asset_materialization is None:
        raise dg.Failure(
            f"{key.to_user_string()} has not been materialized yet; materialize it first"
        )
    path = event.asset_materialization.metadata.get("path")
    if path is None:
        raise dg.Failure(f"{key.to_user_string()} has no 'path' metadata to read its file from")
    return str(path.value)
