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


@pytest.mark.parametrize("rate", [(0.1, 0.5), (0.5, 0.9)])
def test_a_training_sets_label_rate_is_merged_over_parts(tmp_path, rate) -> None:
    """A training set's suite adds the label checks; its label rate (a mean) is the whole set's,
    from the parts' sums, passing or failing as the whole run does."""
    table = _table().assign(is_fraud=np.random.default_rng(5).random(600) < 0.3)
    spec = QualitySpec(min_rows=100, max_null_fraction=0.3, label_rate={"is_fraud": rate})
    arguments = {
        "suite_name": "t",
        "role": TableRole.TRAINING_SET,
        "spec": spec,
        "feature_columns": FEATURES[:3],
        "label_columns": ["is_fraud"],
    }
    whole = run_quality(table, docs_dir=tmp_path / "whole", **arguments)
    sharded = ShardedQuality(docs_dir=tmp_path / "parts", **arguments)
    for part in np.array_split(np.arange(len(table)), 4):  # chunks of rows, not of entities
        sharded.add(table.iloc[part].reset_index(drop=True))
    merged = sharded.report()
    rates = [o for o in merged.outcomes if o.name == "label_rate"]
    (expected,) = [o for o in whole.outcomes if o.name == "label_rate"]
    assert len(rates) == 1 and rates[0].observed == pytest.approx(expected.observed, abs=1e-12)
    assert rates[0].success == expected.success == (rate == (0.1, 0.5))
    others = [o for o in _outcomes(merged) if o[0] != "label_rate"]
    assert others == [o for o in _outcomes(whole) if o[0] != "label_rate"]
    assert merged.success == whole.success
