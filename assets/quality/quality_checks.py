"""The ``quality`` asset check: the use case's Great Expectations suite, run inside the asset.

It runs on the frame the asset just computed (no reload), compares the row count with the asset's
previous materialization, writes the HTML data docs under ``<home>/quality/<use case>/<asset>``
and links them from the check's metadata. A failed expectation fails the check with the column,
what was expected and what was observed; a training set's check blocks training on bad data.
"""

from collections.abc import Sequence

import dagster as dg
import pandas as pd

from assets.metadata import rounded_metadata
from assets.quality.outcomes import QualityReport
from assets.quality.sharded import ShardedQuality
from assets.quality.suites import TableRole
from assets.quality.validation import run_quality
from configs.schema.stages import QualitySpec
from configs.schema.usecase import UseCaseSpec
from resources.home import HomeResource

QUALITY_CHECK = "quality"


def quality_check_spec(key: dg.AssetKey, role: TableRole) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        QUALITY_CHECK,
        asset=key,
        blocking=role == TableRole.TRAINING_SET,
        description=(
            "Great Expectations suite from the YAML quality section: row count and its change "
            "since the last materialization, null fractions, ranges"
            + (", label rates." if role == TableRole.TRAINING_SET else ".")
        ),
    )


def previous_row_count(context: dg.AssetExecutionContext, key: dg.AssetKey) -> int | None:
    """Rows of the asset's latest materialization before this run (None on the first)."""
    event = context.instance.get_latest_materialization_event(key)
    if event is None or event.asset_materialization is None:
        return None
    value = event.asset_materialization.metadata.get("dagster/row_count")
    return int(value.value) if value is not None else None


def _outcomes_table(report: QualityReport) -> str:
    rows = [
        {
            "check": o.name,
            "column": o.column or "",
            "passed": "yes" if o.success else "**NO**",
            "expected": o.expected,
            "observed": o.observed,
            "sample": ", ".join(map(str, o.unexpected_sample[:5])),
        }
        for o in sorted(report.outcomes, key=lambda o: o.success)
    ]
    return pd.DataFrame(rows).to_markdown(index=False) if rows else "_(no expectations)_"


def quality_check_result(
    context: dg.AssetExecutionContext,
    spec: UseCaseSpec,
    key: dg.AssetKey,
    frame: pd.DataFrame,
    role: TableRole,
    home: HomeResource,
    feature_columns: Sequence[str],
    label_columns: Sequence[str] = (),
) -> dg.AssetCheckResult:
    """Run the suite on ``frame`` and turn its report into the asset check's result."""
    report = run_quality(
        frame,
        suite_name="__".join(key.path),
        role=role,
        spec=_by_column(spec),
        feature_columns=feature_columns,
        label_columns=label_columns,
        docs_dir=str(home.created(home.layout.quality(tuple(key.path)))),
        previous_row_count=previous_row_count(context, key),
    )
    return report_check_result(key, report)


def _by_column(spec: UseCaseSpec) -> QualitySpec:
    """The quality section with label rates keyed by column: the YAML names labels, the table
    has their columns."""
    rates = {spec.labels[name].column: rate for name, rate in spec.quality.label_rate.items()}
    return spec.quality.model_copy(update={"label_rate": rates})


def sharded_quality(
    context: dg.AssetExecutionContext,
    spec: UseCaseSpec,
    key: dg.AssetKey,
    home: HomeResource,
    feature_columns: Sequence[str],
    role: TableRole = TableRole.FEATURES,
    label_columns: Sequence[str] = (),
) -> ShardedQuality:
    """The suite of a table that passes by shard after shard: feed it each shard, then turn
    its :meth:`ShardedQuality.report` into the check with :func:`report_check_result`. Same
    suite, name, docs folder and previous row count as :func:`quality_check_result`."""
    return ShardedQuality(
        suite_name="__".join(key.path),
        spec=_by_column(spec),
        feature_columns=feature_columns,
        docs_dir=str(home.created(home.layout.quality(tuple(key.path)))),
        previous_row_count=previous_row_count(context, key),
        role=role,
        label_columns=label_columns,
    )


def report_check_result(key: dg.AssetKey, report: QualityReport) -> dg.AssetCheckResult:
    """A quality report as the asset check's result: counts, failures, the outcomes table and
    the data docs link."""
    failures = report.failures()
    metadata: dict = {
        "expectations": len(report.outcomes),
        "failed": len(failures),
        "failures": ", ".join(f"{o.name}({o.column or 'table'})" for o in failures) or "none",
        "results": dg.MetadataValue.md(_outcomes_table(report)),
    }
    if report.docs_path:
        metadata["data_docs"] = dg.MetadataValue.path(report.docs_path)
    return dg.AssetCheckResult(
        check_name=QUALITY_CHECK,
        asset_key=key,
        passed=report.success,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=rounded_metadata(metadata),
    )
