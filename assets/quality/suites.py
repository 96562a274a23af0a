"""Great Expectations suites for feature tables and training sets: the rules, as expectations.

The rules come from the use case's ``quality`` section (:class:`QualitySpec`); this module turns
them into a GE 1.x ``ExpectationSuite`` and nothing more, so what is asked of a table can be read
(and tested) apart from running it: :func:`assets.quality.validation.run_quality` validates a frame
against the suite, and :mod:`assets.quality.outcomes` reports the results. Each expectation
carries its playbook check name and readable bound in ``meta``.

Great Expectations is imported lazily (:func:`assets.quality.gx_context.import_gx`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import pandas as pd

from assets.quality.gx_context import import_gx
from configs.schema.stages import QualitySpec

if TYPE_CHECKING:
    import great_expectations as gx
    from great_expectations.expectations import Expectation

logger = logging.getLogger(__name__)

# Keys of an expectation's ``meta`` that carry the playbook check name and its readable bound, so
# a result can be reported without re-deriving what was asked.
META_CHECK = "playbook_check"
META_EXPECTED = "playbook_expected"


class TableRole(StrEnum):
    """Which table is validated; a training set also carries labels to check."""

    FEATURES = "features"
    TRAINING_SET = "training_set"


def _expectations() -> Any:
    """The GE expectation classes module (imported lazily, see the module docstring)."""
    import_gx()
    import great_expectations.expectations as gxe

    return gxe


def _tagged(kind: str, check: str, expected: str, **kwargs: Any) -> Expectation:
    """A GE expectation ``kind`` labelled with its playbook check and readable bound.

    The labels ride in ``meta``, which GE copies into each result, so a result is reported
    without re-deriving what was asked.
    """
    expectation_class = getattr(_expectations(), kind)
    return expectation_class(**kwargs, meta={META_CHECK: check, META_EXPECTED: expected})


def _fmt(value: float | None) -> str:
    """A bound for humans: open ends are shown as -inf/inf."""
    return "inf" if value is None else f"{value:g}"


def _row_count_expectations(spec: QualitySpec, previous_row_count: int | None) -> list[Expectation]:
    """At least ``min_rows`` rows, and (when a previous count is known) bounded drift from it."""
    out = [
        _tagged(
            "ExpectTableRowCountToBeBetween",
            "min_rows",
            f"row count >= {spec.min_rows}",
            min_value=spec.min_rows,
        )
    ]
    bounds = row_count_bounds(previous_row_count, spec.max_row_count_change)
    if bounds is not None:
        low, high = bounds
        out.append(
            _tagged(
                "ExpectTableRowCountToBeBetween",
                "row_count_change",
                f"row count in [{low}, {high}] (previous {previous_row_count}"
                f" ± {spec.max_row_count_change:.0%})",
                min_value=low,
                max_value=high,
            )
        )
    return out


def row_count_bounds(previous: int | None, max_change: float | None) -> tuple[int, int] | None:
    """Row counts within ``max_change`` relative change of ``previous``; None when not checked.

    A previous count of 0 gives no relative scale, so the check is off then as well. Products are
    rounded before ceil/floor so that float noise (1000 * 0.7 = 699.99...) moves no bound.
    """
    if previous is None or max_change is None or previous <= 0:
        return None
    low = max(0, math.ceil(round(previous * (1 - max_change), 6)))
    high = math.floor(round(previous * (1 + max_change), 6))
    return low, high


def _exists(column: str) -> Expectation:
    """The column is in the table; a missing one gets no other checks (they would only error)."""
    return _tagged("ExpectColumnToExist", "column_exists", "present", column=column)


def _column_expectations(
    present: set[str], spec: QualitySpec, feature_columns: Sequence[str]
) -> list[Expectation]:
    """Each feature column exists and has at most ``max_null_fraction`` nulls.

    Null checks work on any dtype, list-valued object columns included (GE's pandas engine uses
    ``isnull``, which treats a list or array as one value).
    """
    out = []
    for column in dict.fromkeys(feature_columns):
        out.append(_exists(column))
        if column not in present or spec.max_null_fraction >= 1:
            continue
        out.append(
            _tagged(
                "ExpectColumnValuesToNotBeNull",
                "not_null",
                f"null fraction <= {spec.max_null_fraction:g}",
                column=column,
                mostly=1 - spec.max_null_fraction,
            )
        )
    return out


def _range_expectations(
    present: set[str], spec: QualitySpec, numeric_columns: Collection[str] | None
) -> list[Expectation]:
    """Configured ranges, on columns of this table only and only where values are numeric.

    One ``quality`` section serves several tables, so a range on a column another table holds is
    skipped rather than failed; a non-numeric column (e.g. lists) cannot be compared at all.
    """
    out = []
    for column, (low, high) in spec.ranges.items():
        if column not in present or (low is None and high is None):
            continue
        if numeric_columns is not None and column not in numeric_columns:
            logger.warning("quality: range on %r skipped, the column is not numeric", column)
            continue
        out.append(
            _tagged(
                "ExpectColumnValuesToBeBetween",
                "range",
                f"values in [{_fmt(low)}, {_fmt(high)}]",
                column=column,
                min_value=low,
                max_value=high,
            )
        )
    return out


def _label_expectations(
    present: set[str], spec: QualitySpec, label_columns: Sequence[str], checked: set[str]
) -> list[Expectation]:
    """Labels exist, are never null, and have a mean within ``label_rate`` where one is given.

    ``checked`` are columns whose existence is already asserted (a label listed as a feature).
    """
    out = []
    for column in dict.fromkeys(label_columns):
        if column not in checked:
            out.append(_exists(column))
        if column not in present:
            continue
        out.append(
            _tagged("ExpectColumnValuesToNotBeNull", "label_not_null", "no nulls", column=column)
        )
        if column in spec.label_rate:
            low, high = spec.label_rate[column]
            out.append(
                _tagged(
                    "ExpectColumnMeanToBeBetween",
                    "label_rate",
                    f"mean in [{low:g}, {high:g}]",
                    column=column,
                    min_value=low,
                    max_value=high,
                )
            )
    return out


def build_suite(
    name: str,
    frame_columns: Sequence[str],
    role: TableRole,
    spec: QualitySpec,
    feature_columns: Sequence[str],
    label_columns: Sequence[str] = (),
    previous_row_count: int | None = None,
    *,
    numeric_columns: Collection[str] | None = None,
) -> gx.ExpectationSuite:
    """The suite for one table: row counts, feature columns, ranges and (training sets) labels.

    ``frame_columns`` are the columns the table has, so that checks on absent columns become one
    clear ``column_exists`` failure. ``numeric_columns`` (None = all) limits range checks to
    columns whose values can be compared; :func:`assets.quality.validation.run_quality` derives
    it from the dtypes.
    """
    gx_module = import_gx()
    present = set(frame_columns)
    expectations = [
        *_row_count_expectations(spec, previous_row_count),
        *_column_expectations(present, spec, feature_columns),
        *_range_expectations(present, spec, numeric_columns),
    ]
    if role == TableRole.TRAINING_SET:
        expectations += _label_expectations(present, spec, label_columns, set(feature_columns))
    return gx_module.ExpectationSuite(name=name, expectations=expectations)


def numeric_columns_of(frame: pd.DataFrame) -> list[str]:
    """Columns whose values can be range-checked: numeric dtypes, booleans excluded."""
    return [
        str(column)
        for column, dtype in frame.dtypes.items()
        if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
    ]
