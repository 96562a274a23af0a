"""Metadata every table asset reports, so a user sees the data in the Dagster UI.

Row count and column schema use Dagster's standard keys (``dagster/row_count``,
``dagster/column_schema``) so the UI renders them natively; time range, null rates, label rates
and a preview are added as plain metadata values.

Floats are shown rounded (:func:`rounded_metadata`): the UI prints a float metadata value as
stored (``FloatMetadataEntry`` renders ``floatValue`` untouched), so ``0.91234567891`` would
show every digit. Only what the UI shows is rounded; metrics go to MLflow unrounded.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from configs.schema.usecase import UseCaseSpec
from runtime.shards import ShardResult

PREVIEW_ROWS = 10
# Significant digits a float keeps in metadata: enough to compare two runs' metrics (AUC
# 0.9123 vs 0.9131), few enough to read; digits left of the point are never dropped.
SIGNIFICANT_DIGITS = 4


def round_float(value: float, digits: int = SIGNIFICANT_DIGITS) -> float:
    """``value`` to ``digits`` significant digits, keeping its whole integer part.

    0.912345 -> 0.9123, 0.000123456 -> 0.0001235, 3.14159 -> 3.142, 12345.678 -> 12346.0;
    NaN, infinities and zero stay as they are.
    """
    value = float(value)
    if value == 0 or not math.isfinite(value):
        return value
    magnitude = math.floor(math.log10(abs(value)))
    return round(value, max(0, digits - 1 - magnitude))


def rounded_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """``metadata`` with every float value (plain, NumPy or ``MetadataValue.float``) rounded by
    :func:`round_float`; everything else (ints, bools, text, tables) unchanged.

    The one place asset metadata floats are rounded: wrap a metadata dict in it where it is
    emitted (``dg.Output``, ``dg.MaterializeResult``, ``dg.AssetCheckResult``).
    """
    out: dict[str, Any] = {}
    for key, value in metadata.items():
        if isinstance(value, dg.FloatMetadataValue) and value.value is not None:
            out[key] = dg.MetadataValue.float(round_float(value.value))
        elif isinstance(value, float | np.floating) and not isinstance(value, bool):
            out[key] = round_float(float(value))
        else:
            out[key] = value
    return out


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
        rates = nulls.map(round_float).rename("null_rate").reset_index()
        metadata["null_rates"] = dg.MetadataValue.md(_markdown(rates))
    for name, column in (labels or {}).items():
        if column in frame and len(frame):
            metadata[f"label_rate/{name}"] = float(frame[column].astype(float).mean())
    metadata["preview"] = dg.MetadataValue.md(_markdown(frame.head(PREVIEW_ROWS)))
    return rounded_metadata(metadata)


def asset_identity(spec: UseCaseSpec, stage: str) -> dict:
    """Group, owners and tags every asset of a use case carries (``stage`` names its step)."""
    return {"group_name": spec.name, "owners": spec.owners, "tags": {**spec.tags, "stage": stage}}


def shard_metadata(results: Sequence[ShardResult], shards: int | None = None) -> dict[str, Any]:
    """Where a sharded stage ran, for its asset: engine, shards (default: one per task), nodes,
    tasks and the slowest task's seconds; ``local, 1 shard`` when it ran unsharded."""
    if not results:
        return {"execution": "local, 1 shard"}
    nodes = sorted({r.node for r in results})
    engine = "ray" if any(r.node != "local" for r in results) else "local"
    return {
        "execution": f"{engine}, {shards or len(results)} shards on {len(nodes)} node(s)",
        "shard_tasks": len(results),
        "shard_nodes": dg.MetadataValue.json(nodes),
        "slowest_shard_s": max(r.seconds for r in results),
    }


@dataclass
class TableSummary:
    """:func:`table_metadata` of a table that passes by in parts (shards), never held whole.

    Rows, nulls and (for parts that hold disjoint entities) entity counts add over the parts;
    the time range is the parts' widest; schema and preview are the first non-empty part's.
    Without ``keys`` (parts that share entities, a training set's chunks) no entities are
    counted.
    """

    timestamp: str | None  # None: a table without event times
    keys: Sequence[str]
    rows: int = 0
    entities: int = 0
    time_min: Any = None
    time_max: Any = None
    nulls: pd.Series | None = None
    first: pd.DataFrame | None = None

    def add(self, part: pd.DataFrame) -> None:
        """Count one part: it must hold no entity that another part holds."""
        nulls = part.isna().sum()
        self.nulls = nulls if self.nulls is None else self.nulls.add(nulls, fill_value=0)
        if self.first is None or (self.first.empty and len(part)):
            self.first = part.head(PREVIEW_ROWS).copy()  # not a view that keeps ``part``
        if len(part):
            self.rows += len(part)
            if self.keys:
                self.entities += int(part[list(self.keys)].drop_duplicates().shape[0])
            if self.timestamp in part:
                low, high = part[self.timestamp].min(), part[self.timestamp].max()
                self.time_min = low if self.time_min is None else min(self.time_min, low)
                self.time_max = high if self.time_max is None else max(self.time_max, high)

    def metadata(self) -> dict[str, Any]:
        """The same keys and values :func:`table_metadata` gives for the whole table, plus
        ``entities``."""
        first = self.first if self.first is not None else pd.DataFrame()
        metadata: dict[str, Any] = {
            "dagster/row_count": self.rows,
            "dagster/column_schema": column_schema(first),
        }
        if self.rows and self.timestamp in first:
            metadata["time_min"] = str(self.time_min)
            metadata["time_max"] = str(self.time_max)
        if self.rows and self.nulls is not None:
            rates = (self.nulls / self.rows)[self.nulls > 0]
            if len(rates):
                table = rates.map(round_float).rename("null_rate").reset_index()
                metadata["null_rates"] = dg.MetadataValue.md(_markdown(table))
        metadata["preview"] = dg.MetadataValue.md(_markdown(first))
        if self.keys:
            metadata["entities"] = self.entities
        return rounded_metadata(metadata)
