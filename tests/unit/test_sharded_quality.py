"""The feature-table suite run shard by shard reports what one run on the whole table reports.

A table with nulls, out-of-range values and a row count that moved is validated whole by
``run_quality`` and in entity-disjoint parts by ``ShardedQuality``: every outcome (check, column,
pass/fail, observed value, sampled offenders) must be the same, failures included.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from assets.quality.sharded import ShardedQuality
from assets.quality.suites import TableRole
from assets.quality.validation import run_quality
from configs.schema.stages import QualitySpec

FEATURES = ["count_1h", "amount_mean_1d", "recent", "missing_feature"]


def _table(rows: int = 600) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    mean = rng.normal(50, 30, rows)
    mean[rng.random(rows) < 0.25] = np.nan  # 25% nulls: over a 20% limit
    count = rng.integers(0, 12, rows).astype("int64")  # some above the range's 10
    recent = [list(rng.integers(0, 5, 3)) if i % 7 else None for i in range(rows)]
    return pd.DataFrame(
        {
            "card_id": np.repeat(np.arange(rows // 6), 6),
            "event_timestamp": pd.date_range("2025-01-01", periods=rows, freq="min"),
            "count_1h": count,
            "amount_mean_1d": mean,
            "recent": recent,
        }
    )


def _outcomes(report) -> list[tuple]:
    return [(o.name, o.column, o.success, o.observed, o.unexpected_sample) for o in report.outcomes]


@pytest.mark.parametrize(
    ("previous", "max_null"),
    [(None, 0.2), (1000, 0.2), (650, 0.3)],
)
def test_shard_wise_suite_equals_the_whole_table_run(tmp_path, previous, max_null) -> None:
    table = _table()
    spec = QualitySpec(
        min_rows=100,
        max_null_fraction=max_null,
        max_row_count_change=0.2,
        ranges={"count_1h": (0, 10), "amount_mean_1d": (None, 120)},
    )
    whole = run_quality(
        table,
        suite_name="t",
        role=TableRole.FEATURES,
        spec=spec,
        feature_columns=FEATURES,
        docs_dir=tmp_path / "whole",
        previous_row_count=previous,
    )
    sharded = ShardedQuality(
        suite_name="t",
        spec=spec,
        feature_columns=FEATURES,
        docs_dir=tmp_path / "shards",
        previous_row_count=previous,
    )
    # three parts of whole entities, in table order: their row labels are the table's
    for part in np.array_split(np.arange(len(table) // 6), 3):
        sharded.add(table[table.card_id.isin(part)].reset_index(drop=True))
    merged = sharded.report()
    assert _outcomes(merged) == _outcomes(whole)
    assert merged.success == whole.success
    assert not merged.success  # the case has failures to merge: range, a missing column
    assert merged.docs_path is not None and merged.docs_path.startswith(str(tmp_path / "shards"))


def test_a_table_of_no_rows_is_judged_as_a_whole(tmp_path) -> None:
    spec = QualitySpec(min_rows=1, max_null_fraction=0.1)
    empty = _table().head(0)
    whole = run_quality(
        empty,
        suite_name="t",
        role=TableRole.FEATURES,
        spec=spec,
        feature_columns=FEATURES[:2],
        docs_dir=tmp_path / "whole",
    )
    sharded = ShardedQuality(
        suite_name="t", spec=spec, feature_columns=FEATURES[:2], docs_dir=tmp_path / "shards"
    )
    sharded.add(empty)
    assert _outcomes(sharded.report()) == _outcomes(whole)
