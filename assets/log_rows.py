"""The ``request_log_rows`` check of every asset that reads the request log.

The readers (delayed-label performance, the A/B analysis) skip the rows
:func:`runtime.request_log.load_request_log` cannot read rather than fail on them; skipping must
not hide them. Each such asset reports ``unreadable_log_rows`` (and one count per reason) in its
metadata and carries this warning check, which fails when any row was skipped, so the run's
summary says it ("a failed check is said in the summary") and the Dagster UI shows which rows
and why. It stops nothing downstream: the numbers from the readable rows are still right.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from runtime.request_log_frame import RequestLogRows

REQUEST_LOG_CHECK = "request_log_rows"
EXAMPLES = 10  # skipped rows listed in the metadata; the counts cover them all


def log_rows_check_spec(key: dg.AssetKey) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        REQUEST_LOG_CHECK,
        asset=key,
        description=(
            "Every request-log row read is readable: JSON without NaN / Infinity, integers"
            " within int64, fields of their declared types, parsable times. Unreadable rows are"
            " skipped and counted (metadata unreadable_log_rows); this warning fails when any was."
        ),
    )


def log_rows_metadata(rows: RequestLogRows) -> dict[str, Any]:
    """The counts, and the first skipped rows (id, reason, detail) when there are any."""
    metadata: dict[str, Any] = dict(rows.metadata())
    if rows.unreadable:
        shown = rows.rejected.head(EXAMPLES)
        metadata["unreadable_log_rows_examples"] = dg.MetadataValue.md(
            shown.to_markdown(index=False)
        )
    return metadata


def log_rows_check(
    rows: RequestLogRows, context: dg.AssetExecutionContext | None = None
) -> dg.AssetCheckResult:
    """Passes when no row was skipped; else fails (warning) and, given ``context``, says so in
    the run's log too."""
    if rows.unreadable and context is not None:
        context.log.warning(rows.describe())
    return dg.AssetCheckResult(
        check_name=REQUEST_LOG_CHECK,
        passed=rows.unreadable == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={**log_rows_metadata(rows), "summary": rows.describe()},
    )
