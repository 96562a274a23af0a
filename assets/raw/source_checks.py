"""Config checks that need the file system: does each source file exist, do its columns?

Run by the loader after schema validation, so a wrong path or a column mapping naming a missing
column is reported against the YAML line, before any run starts.
"""

from __future__ import annotations

from collections.abc import Iterator

from assets.raw.file_source import FileSourceError, check_mapping, peek_columns
from assets.split.fixed_test import fixed_test_problems
from configs.schema.consistency import Problem
from configs.schema.issues import short_list
from configs.schema.source import FileSource
from configs.schema.usecase import UseCaseSpec


def _declared(spec: UseCaseSpec, table: str) -> tuple[tuple[str, ...], list[str]]:
    """Where a table's columns are declared in the YAML, and their names."""
    if table == "events":
        return ("events", "columns"), list(spec.events.columns)
    for name, entity in spec.entities.items():
        if entity.table == table:
            return ("entities", name, "columns"), list(entity.table_columns())
    return ("source", "tables", table), []


def file_source_problems(spec: UseCaseSpec) -> Iterator[Problem]:
    """Missing files, mappings naming missing columns, declared columns the file lacks."""
    if not isinstance(spec.source, FileSource):
        return
    for table, file_table in spec.source.tables.items():
        at = ("source", "tables", table)
        try:
            check_mapping(file_table, spec.base_dir)
            found = peek_columns(file_table, spec.base_dir)
        except FileSourceError as exc:
            yield (*at, *exc.field.split(".")), exc.message
            continue
        where, declared = _declared(spec, table)
        for column in declared:
            if column not in found:
                yield (
                    (*where, column),
                    (
                        f"column {column!r} is not in {file_table.path} after mapping (it has: {short_list(found)});"
                        f" map it under source.tables.{table}.columns"
                    ),
                )
    yield from fixed_test_problems(spec)
