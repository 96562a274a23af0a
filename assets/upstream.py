"""Where an upstream asset's latest materialization lives, for consumers that read files directly.

Feast file sources and the point-in-time join scan Parquet files with DuckDB rather than loading a
DataFrame through the IO manager (only the needed columns are read, never a pandas copy), so they
need the file's path: the ``path`` metadata Dagster's UPath IO manager records on every output.
"""

import dagster as dg


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
