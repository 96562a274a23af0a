"""Validating a pandas frame against its quality suite: the one call the asset checks make.

Building the suite (:mod:`assets.quality.suites`), running it in GE, writing the data docs
(:mod:`assets.quality.data_docs`) and reading the results (:mod:`assets.quality.outcomes`) are
separate jobs; :func:`run_quality` strings them together in one ephemeral GE context
(:mod:`assets.quality.gx_context`). Dagster asset checks wrap it, so the rules are testable
without a Dagster instance.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from assets.quality.data_docs import build_docs
from assets.quality.gx_context import ephemeral_context, import_gx
from assets.quality.outcomes import SAMPLE_SIZE, QualityReport, outcome_of, sort_key
from assets.quality.suites import TableRole, build_suite, numeric_columns_of
from configs.schema.stages import QualitySpec

if TYPE_CHECKING:
    import great_expectations as gx
    from great_expectations.core.expectation_validation_result import (
        ExpectationSuiteValidationResult,
    )
    from great_expectations.data_context import AbstractDataContext

DATASOURCE = "playbook"

# get_context() installs the new context as GE's process-wide "project"; validation reads its
# stores through that global, so two runs on two threads must not interleave.
GX_LOCK = threading.Lock()


def validate_frame(
    context: AbstractDataContext, suite: gx.ExpectationSuite, frame: pd.DataFrame
) -> ExpectationSuiteValidationResult:
    """Run the suite on the whole frame through a ValidationDefinition (results are stored)."""
    gx_module = import_gx()
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
    with GX_LOCK:
        context = ephemeral_context(Path(docs_dir))
        validation = validate_frame(context, suite, frame)
        docs_path = build_docs(context)
    outcomes = sorted((outcome_of(r, present) for r in validation.results), key=sort_key)
    return QualityReport(
        suite=suite_name,
        success=all(outcome.success for outcome in outcomes),
        outcomes=outcomes,
        docs_path=docs_path,
    )
