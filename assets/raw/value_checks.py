"""The thorough file checks of ``playbook validate``: every value parses as the run will parse it.

``assets.raw.source_checks`` runs on every load of the code location and reads headers (and
libsvm feature indices) only. This reads every value the YAML says how to parse: a timestamp
column under ``timestamp_unit`` with a stray header line in it, a ``derive`` source holding
text, a libsvm line the parser rejects. Those used to pass validate and fail the raw asset.
"""

from __future__ import annotations

from collections.abc import Iterator

from assets.raw.file_source import FileSourceError, check_file_values
from configs.schema.consistency import Problem
from configs.schema.source import FileSource
from configs.schema.usecase import UseCaseSpec


def file_value_problems(spec: UseCaseSpec) -> Iterator[Problem]:
    """One problem per file table whose values do not parse, at the FileTable field to fix."""
    if not isinstance(spec.source, FileSource):
        return
    for table, file_table in spec.source.tables.items():
        try:
            check_file_values(file_table, spec.base_dir)
        except FileSourceError as exc:
            yield ("source", "tables", table, *exc.field.split(".")), exc.message
