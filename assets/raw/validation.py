"""Pandera schemas derived from the spec's column declarations, and a report of what failed.

The spec declares each column once (type, nullability, range, allowed values, uniqueness); this
module turns that into a ``pandera`` schema, so the YAML is the only place a constraint is
written. Validation is lazy: every failing check is collected, counted and sampled, which is
what a person needs to decide whether the data or the spec is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from configs.schema.tables import Columns, ColumnSpec

_DTYPES = {
    "int": "int64",
    "float": "float64",
    "string": "str",
    "bool": "bool",
    "timestamp": "datetime64[ns]",
}


def _column(spec: ColumnSpec) -> pa.Column:
    checks: list[pa.Check] = []
    if spec.min is not None:
        checks.append(pa.Check.ge(spec.min))
    if spec.max is not None:
        checks.append(pa.Check.le(spec.max))
    if spec.values is not None:
        checks.append(pa.Check.isin(spec.values))
    dtype = "Int64" if spec.dtype == "int" and spec.nullable else _DTYPES[spec.dtype]
    return pa.Column(dtype, checks=checks, nullable=spec.nullable, unique=spec.unique, coerce=True)


def table_schema(name: str, columns: Columns) -> pa.DataFrameSchema:
    """The pandera schema of one raw table; extra columns are allowed, declared ones required."""
    return pa.DataFrameSchema({col: _column(spec) for col, spec in columns.items()}, name=name)


@dataclass
class ValidationReport:
    """Outcome of validating one table: counts per failed check and a sample of offending rows."""

    table: str
    rows: int
    failures: pd.DataFrame = field(default_factory=pd.DataFrame)
    sample: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def passed(self) -> bool:
        return self.failures.empty

    @property
    def failed_rows(self) -> int:
        return int(self.failures["rows"].sum()) if not self.failures.empty else 0


def validate_table(
    frame: pd.DataFrame, schema: pa.DataFrameSchema, sample_size: int = 10
) -> tuple[pd.DataFrame, ValidationReport]:
    """Validate ``frame``; return the dtype-coerced frame (or the input, if it failed) and a report."""
    try:
        valid = schema.validate(frame, lazy=True)
    except SchemaErrors as exc:
        cases = exc.failure_cases
        cases = cases.assign(
            column=cases["column"].fillna("<table>").astype(str), check=cases["check"].astype(str)
        )
        failures = (
            cases.groupby(["column", "check"], as_index=False)
            .agg(
                rows=("failure_case", "size"),
                examples=("failure_case", lambda s: ", ".join(map(str, s.head(3)))),
            )
            .sort_values("rows", ascending=False, ignore_index=True)
        )
        labels = cases["index"].dropna().unique()[:sample_size]
        sample = frame.loc[frame.index.isin(labels)]
        return frame, ValidationReport(schema.name or "table", len(frame), failures, sample)
    return valid, ValidationReport(schema.name or "table", len(frame))
