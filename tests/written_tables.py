"""The table an asset wrote itself, read from the file its materialization names.

Out-of-core assets (aggregate feature tables, training sets) return no value to Dagster: they
write their Parquet file a part at a time and record its ``path`` in the materialization's
metadata, where the IO manager would have written it. ``ExecuteInProcessResult.asset_value``
has nothing to give for them; tests read the file instead, as the next asset does.
"""

from __future__ import annotations

import dagster as dg
import pandas as pd


def written_table(
    result: dg.ExecuteInProcessResult, key: dg.AssetKey | tuple[str, ...]
) -> pd.DataFrame:
    """The frame asset ``key`` wrote in this run (its last materialization)."""
    key = key if isinstance(key, dg.AssetKey) else dg.AssetKey(list(key))
    events = [e for e in result.get_asset_materialization_events() if e.asset_key == key]
    if not events:
        raise AssertionError(f"{key.to_user_string()} was not materialized in this run")
    return pd.read_parquet(events[-1].materialization.metadata["path"].value)
