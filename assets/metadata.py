"""Metadata every table asset reports, so a user sees the data in the Dagster UI.

Row count and column schema use Dagster's standard keys (``dagster/row_count``,
``dagster/column_schema``) so the UI renders them natively; time range, null rates, label rates
and a preview are added as plain metadata values.
"""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg
import pandas as pd

from configs.schema.usecase import UseCaseSpec

PREVIEW_ROWS = 10


def _markdown(frame: pd.DataFrame) -> str:
    return frame.to_markdown(index=False) if not frame.empty else "_(empty)_"


def column_schema(frame: pd.DataFrame) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(str(c), str(t)) for c, t in frame.dtypes.items()])


def table_metadata(
    frame: pd.DataFrame, timestamp: str | None = None, labels: Mapping[str, str] | None = None
) -> dict[str, dg.MetadataValue | int | float | str]:
    """Row count, schema, time range, null rates, label rates and a preview of ``frame``."""
    metadata: dict[str, dg.MetadataValue | int | float | str] = {
        "dagster/row_count": len(frame),
        "dagster/column_schema": column_schema(frame),
    }
    if timestamp and timestamp in frame and len(frame):
        metadata["time_min"] = str(frame[timestamp].min())
        metadata["time_max"] = str(frame[timestamp].max())
    nulls = frame.isna().mean()
    nulls = nulls[nulls > 0]
    if len(nulls):
        metadata["null_rates"] = dg.MetadataValue.md(
            _markdown(nulls.rename("null_rate").reset_index())
        )
    for name, column in (labels or {}).items():
        if column in frame and len(frame):
            metadata[f"label_rate/{name}"] = float(frame[column].astype(float).mean())
    metadata["preview"] = dg.MetadataValue.md(_markdown(frame.head(PREVIEW_ROWS)))
    return metadata


def asset_identity(spec: UseCaseSpec, stage: str) -> dict:
    """Group, owners and tags every asset of a use case carries (``stage`` names its step)."""
    return {"group_name": spec.name, "owners": spec.owners, "tags": {**spec.tags, "stage": stage}}
