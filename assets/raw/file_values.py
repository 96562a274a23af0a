"""Values of a file table that the YAML says how to parse: timestamps and derived labels.

A run parses them with ``timestamps`` and ``derived``; validate runs the same two functions over
every row of every file, a block at a time (``check_values``), so a value the run would reject (a
stray header line under ``timestamp_unit: s``, text in a column a ``derive`` rule compares) is
reported by validate, with the file and the row, instead of failing the raw asset later.
Messages name columns and rows, never a value: a data file's content stays out of logs.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable

import numpy as np
import pandas as pd

from assets.raw.file_common import FileSourceError
from configs.schema.source import FileTable, LabelRule

_OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt,
        "==": operator.eq, "!=": operator.ne}  # fmt: skip


class BadValues(FileSourceError):
    """Values of ``column`` that do not parse: how many, and the first one's row label."""

    def __init__(self, field: str, column: str, expected: str, rows: int, first: int) -> None:
        super().__init__(
            field, f"column '{column}' should hold {expected}; {rows} rows do not, e.g. row {first}"
        )
        self.column, self.expected, self.rows, self.first = column, expected, rows, first


def _bad_rows(raw: pd.Series, failed: pd.Series, field: str, column: str, expected: str) -> None:
    """Raise naming the first value that did not parse (missing values are allowed)."""
    bad = (failed & raw.notna()).to_numpy()
    if bad.any():
        first = raw.index[int(np.flatnonzero(bad)[0])]
        raise BadValues(field, column, expected, int(bad.sum()), int(first))


def timestamps(raw: pd.Series, column: str, table: FileTable) -> pd.Series:
    """Parse one timestamp column to tz-naive UTC ``datetime64[ns]``."""
    unit, fmt = table.timestamp_unit, table.timestamp_format
    if pd.api.types.is_datetime64_any_dtype(raw):
        parsed = raw
    elif unit or pd.api.types.is_numeric_dtype(raw):
        if not unit:
            raise FileSourceError(
                "timestamp_unit",
                f"column '{column}' holds numbers; set timestamp_unit (s, ms, us, ns)",
            )
        numbers = pd.to_numeric(raw, errors="coerce")
        _bad_rows(raw, numbers.isna(), "timestamp_unit", column, f"epoch numbers in unit {unit!r}")
        try:
            parsed = pd.to_datetime(numbers, unit=unit, utc=True)
        except (ValueError, OverflowError):
            raise FileSourceError(
                "timestamp_unit",
                f"column '{column}' is out of range for unit {unit!r} (dates after 2262?)",
            ) from None
    else:
        parsed = pd.to_datetime(raw, format=fmt, utc=True, errors="coerce")
        expected = f"text in format {fmt!r}" if fmt else "dates pandas can parse (or set this)"
        _bad_rows(raw, parsed.isna(), "timestamp_format", column, expected)
    if parsed.dt.tz is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    return parsed.astype("datetime64[ns]")


def derived(frame: pd.DataFrame, name: str, rule: LabelRule, table: FileTable) -> pd.Series:
    """0/1 int8 column from a numeric rule; the rule may name the spec or the file column."""
    field = f"derive.{name}.column"
    inverse = {file_column: spec for spec, file_column in table.columns.items()}
    values = frame[rule.column if rule.column in frame else inverse[rule.column]]
    if not pd.api.types.is_numeric_dtype(values):
        numbers = pd.to_numeric(values, errors="coerce")
        _bad_rows(values, numbers.isna(), field, rule.column, "numbers")
        raise FileSourceError(
            field, f"column '{rule.column}' is not numeric (dtype {values.dtype})"
        )
    if values.isna().any():
        row = values.index[int(np.flatnonzero(values.isna().to_numpy())[0])]
        raise FileSourceError(
            field,
            f"column '{rule.column}' has missing values (e.g. row {row}); derive needs numbers",
        )
    return _OPS[rule.op](values, rule.value).astype(np.int8)


def value_columns(table: FileTable) -> list[str]:
    """File columns ``check_values`` reads: those parsed as timestamps and those ``derive`` reads."""
    to_file = dict(table.columns)
    names = [to_file.get(c, c) for c in table.timestamp_columns if c not in table.derive]
    names += [to_file.get(rule.column, rule.column) for rule in table.derive.values()]
    return [name for name in dict.fromkeys(names) if name != table.row_id]


def _check_block(block: pd.DataFrame, table: FileTable) -> None:
    frame = block.rename(columns={file: spec for spec, file in table.columns.items()})
    for column in table.timestamp_columns:
        if column in frame:
            timestamps(frame[column], column, table)
    for name, rule in table.derive.items():
        derived(frame, name, rule, table)


def check_values(
    table: FileTable, path: str, blocks: Iterable[pd.DataFrame], first_line: int | None
) -> None:
    """Parse every block of one file as a run would; raise once, counting every bad row.

    ``blocks`` hold the file columns of ``value_columns``, indexed by row number in the file;
    ``first_line`` is the line of row 0 in a text file (None for parquet).
    """
    found: BadValues | None = None
    total = 0
    for block in blocks:
        try:
            _check_block(block, table)
        except BadValues as bad:
            found = found or bad
            total += bad.rows if (bad.field, bad.column) == (found.field, found.column) else 0
    if found is None:
        return
    where = f"row {found.first}"
    if first_line is not None:
        where += f", line {first_line + found.first}"
    hint = ""
    if found.first == 0 and table.format == "csv" and not table.header:
        hint = "; if line 1 is a header, set header: true"
    raise FileSourceError(
        found.field,
        f"column '{found.column}' should hold {found.expected}; {total} rows of {path} do not"
        f" (the first: {where}){hint}",
    )
