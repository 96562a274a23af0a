"""What a quality run found, per expectation: JSON-able outcomes and the report they make up.

GE's results are rich objects tied to a context that is thrown away after the run; this module
turns each into a plain :class:`ExpectationOutcome` (the playbook check, the column, what was
observed against what was expected, a few offending values) that asset-check metadata, logs and
tests can read without GE.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from assets.quality.suites import META_CHECK, META_EXPECTED

if TYPE_CHECKING:
    from great_expectations.core.expectation_validation_result import (
        ExpectationValidationResult,
    )

# How many offending values (or row labels) an outcome carries, and GE is asked to collect.
SAMPLE_SIZE = 10


@dataclass(frozen=True)
class ExpectationOutcome:
    """One expectation's result, JSON-able, for asset-check metadata and logs.

    ``name`` is the playbook check (``min_rows``, ``row_count_change``, ``column_exists``,
    ``not_null``, ``label_not_null``, ``range``, ``label_rate``); ``observed`` is the row count,
    null fraction, out-of-range count or mean that was measured (or GE's error message when the
    expectation could not be evaluated); ``unexpected_sample`` holds a few offending values (for
    null checks, the index labels of null rows).
    """

    name: str
    column: str | None
    success: bool
    observed: Any
    expected: str
    unexpected_sample: list


@dataclass(frozen=True)
class QualityReport:
    """The result of one suite run; ``docs_path`` is the HTML page of this validation."""

    suite: str
    success: bool
    outcomes: list[ExpectationOutcome]
    docs_path: str | None

    def failures(self) -> list[ExpectationOutcome]:
        """The outcomes that failed, the part an asset check reports first."""
        return [outcome for outcome in self.outcomes if not outcome.success]


def jsonable(value: Any) -> Any:
    """Plain JSON types from numpy/pandas values: NaN/NaT -> None, arrays -> lists."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, pd.Timestamp | pd.Timedelta):
        return None if pd.isna(value) else value.isoformat()
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


def error_message(result: ExpectationValidationResult) -> str | None:
    """GE's message when an expectation could not be evaluated (flat or per-metric info)."""
    info = result.exception_info or {}
    if info.get("raised_exception"):
        return str(info.get("exception_message"))
    for nested in info.values():
        if isinstance(nested, dict) and nested.get("raised_exception"):
            return str(nested.get("exception_message"))
    return None


def _observed(check: str, column: str | None, result: dict, present: set[str]) -> Any:
    """The measured value a check is judged on, in the unit its ``expected`` text uses."""
    if check == "column_exists":
        return column in present
    if check in ("not_null", "label_not_null"):
        total = result.get("element_count") or 0
        return round(result.get("unexpected_count", 0) / total, 6) if total else 0.0
    if check == "range":
        return result.get("unexpected_count")
    return jsonable(result.get("observed_value"))


def outcome_of(result: ExpectationValidationResult, present: set[str]) -> ExpectationOutcome:
    """One GE result as an :class:`ExpectationOutcome`."""
    config = result.expectation_config
    meta = config.meta or {}
    check = meta.get(META_CHECK, config.type)
    column = config.kwargs.get("column")
    error = error_message(result)
    details = result.result or {}
    return ExpectationOutcome(
        name=check,
        column=column,
        success=bool(result.success) and error is None,
        observed=error if error is not None else _observed(check, column, details, present),
        expected=meta.get(META_EXPECTED, ""),
        unexpected_sample=_sample(check, details),
    )


def _sample(check: str, details: dict) -> list:
    """A few offending values; for null checks, where every value is null, their row labels."""
    key = "partial_unexpected_list"
    if check in ("not_null", "label_not_null"):
        key = "partial_unexpected_index_list"
    return jsonable(list(details.get(key) or []))[:SAMPLE_SIZE]


_ORDER = ("min_rows", "row_count_change", "column_exists", "not_null", "range")


def sort_key(outcome: ExpectationOutcome) -> tuple[int, str]:
    """Suite order (row counts, columns, ranges, labels); GE returns results in graph order."""
    rank = _ORDER.index(outcome.name) if outcome.name in _ORDER else len(_ORDER)
    return rank, outcome.column or ""
