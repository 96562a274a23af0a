"""The quality suite of a table that is never held whole: run on each shard, merged exactly.

An out-of-core feature table passes by shard after shard. Every expectation of the feature-table
suite is a count over rows, so the whole table's result follows from the shards' counts:

* row count (``min_rows``, ``row_count_change``): the shards' rows add up to the table's, which
  is judged against the same bounds (the previous run's total for the change);
* ``column_exists``: every shard has the table's columns;
* ``not_null``: null counts add; judged as GE does (``(rows - nulls) / rows >= mostly``);
* ``range``: out-of-range and null counts add; judged as GE does over the non-null values;
* ``label_rate`` (training sets): a mean, so the shards' sums and non-null counts add, and the
  whole set's mean is judged against the same bounds.

So pass/fail, observed values and failure counts equal a run on the whole table. Each shard's
frame is indexed by its rows' positions in the table, so the sampled row labels of null checks
are the whole table's. The HTML data docs are the first shard's validation (exact when the table
is one shard); the merged result is what the asset check reports.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from assets.quality.data_docs import build_docs
from assets.quality.gx_context import ephemeral_context
from assets.quality.outcomes import (
    SAMPLE_SIZE,
    ExpectationOutcome,
    QualityReport,
    error_message,
    jsonable,
    sort_key,
)
from assets.quality.suites import (
    META_CHECK,
    META_EXPECTED,
    TableRole,
    build_suite,
    numeric_columns_of,
)
from assets.quality.validation import GX_LOCK, validate_frame
from configs.schema.stages import QualitySpec

_ROW_COUNT = "expect_table_row_count_to_be_between"
_EXISTS = "expect_column_to_exist"
_NOT_NULL = "expect_column_values_to_not_be_null"
_BETWEEN = "expect_column_values_to_be_between"
_MEAN = "expect_column_mean_to_be_between"


@dataclass
class _Tally:
    """One expectation's counts over the shards seen so far."""

    check: str
    column: str | None
    expected: str
    kind: str
    kwargs: dict
    passed: bool = True  # every shard (what column_exists is judged on)
    elements: int = 0
    missing: int = 0
    unexpected: int = 0
    sample: list = field(default_factory=list)
    error: str | None = None
    total: float = 0.0  # a mean's sum over the non-null values seen

    def add(self, result: Any, frame: pd.DataFrame) -> None:
        details = result.result or {}
        error = error_message(result)
        self.error = self.error or error
        self.passed = self.passed and bool(result.success) and error is None
        if self.kind == _MEAN:  # GE gives the shard's mean alone: sum the values themselves
            if self.column in frame:
                values = frame[self.column].dropna().astype(float)
                self.total += float(values.sum())
                self.elements += len(values)
            return
        self.elements += int(details.get("element_count") or 0)
        self.missing += int(details.get("missing_count") or 0)
        self.unexpected += int(details.get("unexpected_count") or 0)
        key = (
            "partial_unexpected_index_list" if self.kind == _NOT_NULL else "partial_unexpected_list"
        )
        if len(self.sample) < SAMPLE_SIZE:
            self.sample += jsonable(list(details.get(key) or []))
            self.sample = self.sample[:SAMPLE_SIZE]

    def _mostly(self, considered: int) -> bool:
        """GE's map-expectation verdict: vacuously true on no rows."""
        if considered == 0:
            return True
        mostly = self.kwargs.get("mostly")
        mostly = 1.0 if mostly is None else float(mostly)
        return (float(considered) - float(self.unexpected)) / float(considered) >= mostly

    def outcome(self, rows: int) -> ExpectationOutcome:
        """The whole table's outcome of this expectation (``rows``: the table's rows)."""
        if self.kind == _ROW_COUNT:
            low, high = self.kwargs.get("min_value"), self.kwargs.get("max_value")
            success = (low is None or rows >= low) and (high is None or rows <= high)
            observed: Any = rows
        elif self.kind == _EXISTS:
            success, observed = self.passed, self.passed
        elif self.kind == _NOT_NULL:
            success = self._mostly(self.elements)
            observed = round(self.unexpected / self.elements, 6) if self.elements else 0.0
        elif self.kind == _BETWEEN:
            success, observed = self._mostly(self.elements - self.missing), self.unexpected
        elif self.kind == _MEAN:
            low, high = self.kwargs.get("min_value"), self.kwargs.get("max_value")
            observed = self.total / self.elements if self.elements else None
            success = observed is not None and (low is None or observed >= low)
            success = success and (high is None or observed <= high)
        else:
            raise ValueError(f"quality: {self.kind} cannot be merged over shards")
        if self.error is not None:
            success, observed = False, self.error
        return ExpectationOutcome(
            name=self.check,
            column=self.column,
            success=success,
            observed=observed,
            expected=self.expected,
            unexpected_sample=self.sample,
        )


class ShardedQuality:
    """A table's suite (a feature table's, or with ``role`` and ``label_columns`` a training
    set's), fed one shard at a time (:meth:`add`), reported whole (:meth:`report`): the same
    outcomes :func:`assets.quality.validation.run_quality` gives for the concatenated table."""

    def __init__(
        self,
        *,
        suite_name: str,
        spec: QualitySpec,
        feature_columns: Sequence[str],
        docs_dir: str | Path,
        previous_row_count: int | None = None,
        role: TableRole = TableRole.FEATURES,
        label_columns: Sequence[str] = (),
    ) -> None:
        self.suite_name = suite_name
        self.spec = spec
        self.feature_columns = list(feature_columns)
        self.role = role
        self.label_columns = list(label_columns)
        self.docs_dir = Path(docs_dir)
        self.previous_row_count = previous_row_count
        self.rows = 0
        self.present: set[str] | None = None
        self.tallies: dict[tuple[str, str | None, str], _Tally] = {}
        self.docs_path: str | None = None

    def add(self, frame: pd.DataFrame) -> None:
        """Validate one shard (all shards have the table's columns and dtypes). Its index is
        set, in place (no copy of a shard), to its rows' positions in the table."""
        frame.index = pd.RangeIndex(self.rows, self.rows + len(frame))
        present = {str(column) for column in frame.columns}
        suite = build_suite(
            self.suite_name,
            list(present),
            self.role,
            self.spec,
            self.feature_columns,
            self.label_columns,
            previous_row_count=self.previous_row_count,
            numeric_columns=numeric_columns_of(frame),
        )
        first = self.present is None
        with GX_LOCK:
            context = ephemeral_context(self.docs_dir)
            validation = validate_frame(context, suite, frame)
            if first:
                self.docs_path = build_docs(context)
        # A GE context is cyclic garbage that holds the frame it validated; the cyclic collector
        # rarely runs (few container objects are allocated, however large the frames), so
        # without this every validated shard would stay in memory until the table is done.
        del context
        gc.collect()
        self.present = present if first else (self.present or set()) & present
        for result in validation.results:
            config = result.expectation_config
            meta = config.meta or {}
            check = meta.get(META_CHECK, config.type)
            key = (check, config.kwargs.get("column"), config.type)
            if key not in self.tallies:
                kwargs = dict(config.kwargs)
                expected = meta.get(META_EXPECTED, "")
                self.tallies[key] = _Tally(check, key[1], expected, config.type, kwargs)
            self.tallies[key].add(result, frame)
        self.rows += len(frame)

    def report(self) -> QualityReport:
        """The merged report; the data docs are the first shard's."""
        if self.present is None:
            raise ValueError("quality: no shard was validated")
        outcomes = sorted((t.outcome(self.rows) for t in self.tallies.values()), key=sort_key)
        return QualityReport(
            suite=self.suite_name,
            success=all(outcome.success for outcome in outcomes),
            outcomes=outcomes,
            docs_path=self.docs_path,
        )
