"""Great Expectations suites for feature tables and training sets, as plain functions.

The rules come from the use case's ``quality`` section (:class:`QualitySpec`); this module turns
them into a GE 1.x ``ExpectationSuite``, validates a pandas frame against it in an ephemeral
context and writes the HTML data docs of the run. Dagster asset checks wrap :func:`run_quality`,
so the rules are testable without a Dagster instance.

Great Expectations is imported lazily: importing it costs seconds, and Dagster imports this
module whenever it loads the code location, not only when a check runs.

GE must stay offline and quiet inside a pipeline run:

- GE 1.24 ships no analytics client (no posthog, nothing reads ``GX_ANALYTICS_ENABLED``) and its
  PyPI version checker is not called anywhere; the env var is still set (if unset) before the
  import, so a future pin that brings analytics back starts with it off. The context's
  ``analytics_enabled`` variable is set to False as well.
- The validator draws a tqdm "Calculating Metrics" bar on stderr unless the context's
  ``progress_bars`` variable turns it off, which :func:`_ephemeral_context` does.
- The ephemeral context comes with a ``local_site`` writing docs to a temporary directory; it is
  replaced by one site under ``docs_dir``.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd

from configs.schema.stages import QualitySpec

if TYPE_CHECKING:
    import great_expectations as gx
    from great_expectations.core.expectation_validation_result import (
        ExpectationSuiteValidationResult,
        ExpectationValidationResult,
    )
    from great_expectations.data_context import AbstractDataContext
    from great_expectations.expectations import Expectation

logger = logging.getLogger(__name__)

DOCS_SITE = "playbook"
DATASOURCE = "playbook"
SAMPLE_SIZE = 10
# Keys of an expectation's ``meta`` that carry the playbook check name and its readable bound, so
# a result can be reported without re-deriving what was asked.
META_CHECK = "playbook_check"
META_EXPECTED = "playbook_expected"

# get_context() installs the new context as GE's process-wide "project"; validation reads its
# stores through that global, so two runs on two threads must not interleave.
_GX_LOCK = threading.Lock()


class TableRole(StrEnum):
    """Which table is validated; a training set also carries labels to check."""

    FEATURES = "features"
    TRAINING_SET = "training_set"


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


def _gx() -> Any:
    """Import Great Expectations on first use, with analytics off before the import reads env."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations

    return great_expectations


def _expectations() -> Any:
    """The GE expectation classes module (imported lazily, see the module docstring)."""
    _gx()
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
    columns whose values can be compared; :func:`run_quality` derives it from the dtypes.
    """
    gx_module = _gx()
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


def _ephemeral_context(docs_dir: Path) -> AbstractDataContext:
    """An in-memory GE context, silent, whose only data docs site is ``docs_dir``."""
    gx_module = _gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx_module.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    context.variables.analytics_enabled = False
    for site in list(context.list_data_docs_sites()):
        context.delete_data_docs_site(site)
    docs_dir.mkdir(parents=True, exist_ok=True)
    context.add_data_docs_site(
        DOCS_SITE,
        {
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(docs_dir),
            },
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    return context


def _validate(
    context: AbstractDataContext, suite: gx.ExpectationSuite, frame: pd.DataFrame
) -> ExpectationSuiteValidationResult:
    """Run the suite on the whole frame through a ValidationDefinition (results are stored)."""
    gx_module = _gx()
    asset = context.data_sources.add_pandas(DATASOURCE).add_dataframe_asset(suite.name)
    batch = asset.add_batch_definition_whole_dataframe("whole")
    suite = context.suites.add(suite)
    definition = context.validation_definitions.add(
        gx_module.ValidationDefinition(name=suite.name, data=batch, suite=suite)
    )
    return definition.run(
        batch_parameters={"dataframe": frame},
        result_format={"result_format": "SUMMARY", "partial_unexpected_count": SAMPLE_SIZE},
    )


def _build_docs(context: AbstractDataContext) -> str | None:
    """Write the data docs and return this validation's page (else the index), or None.

    Docs are a convenience: a rendering error is logged and must not hide the quality result.
    """
    try:
        index = context.build_data_docs(site_names=[DOCS_SITE]).get(DOCS_SITE)
        keys = context.validation_results_store.list_keys()
        urls = (
            context.get_docs_sites_urls(resource_identifier=keys[-1], site_name=DOCS_SITE)
            if keys
            else []
        )
    except Exception:  # GE renderers raise anything; the quality result matters more
        logger.warning("quality: building data docs failed", exc_info=True)
        return None
    for url in [*(entry.get("site_url") for entry in urls), index]:
        path = _url_to_path(url)
        if path is not None and Path(path).is_file():
            return path
    return None


def _url_to_path(url: str | None) -> str | None:
    """A local path from GE's ``file://`` site URL."""
    if not url:
        return None
    parsed = urlparse(url)
    return unquote(parsed.path) if parsed.scheme in ("file", "") else None


def _jsonable(value: Any) -> Any:
    """Plain JSON types from numpy/pandas values: NaN/NaT -> None, arrays -> lists."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, np.generic):
        return _jsonable(value.item())
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


def _error_message(result: ExpectationValidationResult) -> str | None:
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
    return _jsonable(result.get("observed_value"))


def _outcome(result: ExpectationValidationResult, present: set[str]) -> ExpectationOutcome:
    """One GE result as an :class:`ExpectationOutcome`."""
    config = result.expectation_config
    meta = config.meta or {}
    check = meta.get(META_CHECK, config.type)
    column = config.kwargs.get("column")
    error = _error_message(result)
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
    return _jsonable(list(details.get(key) or []))[:SAMPLE_SIZE]


_ORDER = ("min_rows", "row_count_change", "column_exists", "not_null", "range")


def _sort_key(outcome: ExpectationOutcome) -> tuple[int, str]:
    """Suite order (row counts, columns, ranges, labels); GE returns results in graph order."""
    rank = _ORDER.index(outcome.name) if outcome.name in _ORDER else len(_ORDER)
    return rank, outcome.column or ""


def run_quality(
    frame: pd.DataFrame,
    *,
    suite_name: str,
    role: TableRole,
    spec: QualitySpec,
    feature_columns: Sequence[str],
    label_columns: Sequence[str] = (),
    docs_dir: str | Path,
    previous_row_count: int | None = None,
) -> QualityReport:
    """Validate ``frame`` against the suite for its role and write the run's data docs.

    Never raises for bad data: every violation is a failed outcome. The GE context is in-memory
    and thrown away, so nothing but the docs under ``docs_dir`` outlives the call.
    """
    present = {str(column) for column in frame.columns}
    suite = build_suite(
        suite_name,
        list(present),
        role,
        spec,
        feature_columns,
        label_columns,
        previous_row_count,
        numeric_columns=numeric_columns_of(frame),
    )
    with _GX_LOCK:
        context = _ephemeral_context(Path(docs_dir))
        validation = _validate(context, suite, frame)
        docs_path = _build_docs(context)
    outcomes = sorted((_outcome(r, present) for r in validation.results), key=_sort_key)
    return QualityReport(
        suite=suite_name,
        success=all(outcome.success for outcome in outcomes),
        outcomes=outcomes,
        docs_path=docs_path,
    )


def outcomes_by_check(report: QualityReport) -> Mapping[str, list[ExpectationOutcome]]:
    """Outcomes grouped by check name, e.g. to emit one Dagster asset check per rule."""
    grouped: dict[str, list[ExpectationOutcome]] = {}
    for outcome in report.outcomes:
        grouped.setdefault(outcome.name, []).append(outcome)
    return grouped
