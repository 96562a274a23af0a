"""Reads one ``FileTable`` (csv, parquet or libsvm; one path or a glob) into a pandas frame.

Anything a user can get wrong in the YAML (a path matching nothing, a column-name typo, the wrong
encoding, an unparseable timestamp) raises ``FileSourceError`` naming the FileTable field to fix,
so config validation can point at the YAML line instead of showing a pandas trace.

Config checks come in two depths. ``peek_columns``/``check_mapping``, on every load: the columns
after mapping, from a csv's header, a parquet schema, or every line of a libsvm file
(``assets.raw.libsvm``, streamed: a feature first used on line 500 is still a column).
``check_file_values``, added by ``playbook validate``: every value the run parses as the YAML
says (timestamps, ``derive`` sources, libsvm lines), a block at a time
(``assets.raw.file_values``), so a stray header line fails validate rather than the run.
"""

from __future__ import annotations

import codecs
import difflib
import glob
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import fsspec
import pandas as pd
import pyarrow.parquet as pq

from assets.raw.file_common import FileSourceError, join_path, reason
from assets.raw.file_values import check_values, derived, timestamps, value_columns
from assets.raw.libsvm import check_lines, libsvm_columns, read_libsvm
from assets.raw.source_paths import OutsideRootsError, Roots
from configs.schema.issues import short_list
from configs.schema.source import FileTable

__all__ = [
    "FileSourceError",
    "check_file_values",
    "check_mapping",
    "peek_columns",
    "read_table",
    "resolve_paths",
]
VALUE_ROWS = 1_000_000  # rows of a csv or parquet file parsed at a time by check_mapping


def resolve_paths(table: FileTable, base_dir: Path) -> list[str]:
    """Files the table's path or glob matches, sorted so that concatenation is reproducible.

    Only files inside the allowed roots (``assets.raw.source_paths``): the glob's fixed folders
    are checked before anything is listed, each match (symlinks followed) after.
    """
    pattern = join_path(base_dir, table.path)
    roots = Roots(table, base_dir)
    try:
        roots.check_pattern("path", pattern)
        if "://" in pattern:
            fs, _ = fsspec.core.url_to_fs(pattern)
            found = [fs.unstrip_protocol(p) for p in fs.glob(pattern) if fs.isfile(p)]
        else:
            found = [p for p in glob.glob(pattern, recursive=True) if Path(p).is_file()]
        roots.check_files("path", found)
    except OutsideRootsError as err:
        raise FileSourceError(err.field, err.message) from None
    if not found:
        raise FileSourceError("path", f"no file matches {pattern}")
    return sorted(found)


def _encoding_error(path: str, encoding: str, err: UnicodeDecodeError) -> FileSourceError:
    """Name the first undecodable byte by its offset in the whole file (pandas reports a chunk's)."""
    decoder, offset, position = codecs.getincrementaldecoder(encoding)(), 0, err.start
    with fsspec.open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            pending = len(decoder.getstate()[0])
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as found:
                err, position = found, offset - pending + found.start
                break
            offset += len(chunk)
    byte = err.object[err.start] if err.start < len(err.object) else 0
    return FileSourceError(
        "encoding",
        f"file {path} is not valid {encoding} (byte 0x{byte:02x} at offset {position}); "
        "set encoding to the file's, e.g. latin-1 or cp1252",
    )


def _csv_options(table: FileTable) -> dict:
    """pandas options for the table; the slow python engine only for multi-character separators."""
    sep = "\t" if table.separator == "\\t" else table.separator  # YAML '\t' in single quotes
    if not sep:
        raise FileSourceError("separator", "is empty; expected e.g. ',', '\\t', ';' or '::'")
    options: dict = {"encoding": table.encoding, "sep": sep}
    if len(sep) > 1:  # pandas reads a long separator as a regex; the YAML means it literally
        options.update(sep=re.escape(sep), engine="python")
    if not table.header:
        options.update(header=None, names=table.names)
    return options


def _read_csv(path: str, table: FileTable, nrows: int | None = None) -> pd.DataFrame:
    """One csv file; a headerless file without ``names`` gets columns "0", "1", ... ."""
    options = _csv_options(table)
    try:
        if table.names:  # pandas silently misaligns when names and the file's width disagree
            width = pd.read_csv(path, nrows=1, **{**options, "names": None}).shape[1]
            if width != len(table.names):
                raise FileSourceError(
                    "names", f"lists {len(table.names)} names but {path} has {width} fields a line"
                )
        frame = pd.read_csv(path, nrows=nrows, **options)
    except UnicodeDecodeError as err:
        raise _encoding_error(path, table.encoding, err) from None
    except FileSourceError:
        raise
    except (ValueError, OSError) as err:
        raise FileSourceError(
            "format",
            f"cannot read {path} as csv with separator {table.separator!r}: {reason(err)}",
        ) from None
    frame.columns = [str(c) for c in frame.columns]
    return frame


def _read_parquet(path: str, schema_only: bool = False) -> pd.DataFrame:
    """One parquet file (or its empty schema); a stored pandas index comes back as columns."""
    try:
        if schema_only:
            with fsspec.open(path, "rb") as handle:
                frame = pq.ParquetFile(handle).schema_arrow.empty_table().to_pandas()
        else:
            frame = pd.read_parquet(path)
    except (ValueError, OSError, TypeError) as err:
        raise FileSourceError("format", f"cannot read {path} as parquet: {reason(err)}") from None
    named_index = any(name is not None for name in frame.index.names)
    return frame.reset_index(drop=not named_index)


def _missing(name: str, available: list[str], where: str, kind: str) -> str:
    """Not-found message listing what exists, with a did-you-mean for typos."""
    close = difflib.get_close_matches(name, available, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"{kind} '{name}' not found in {where}; it has: {short_list(available)}{hint}"


def _spec_names(table: FileTable, available: list[str], where: str) -> list[str]:
    """Column names after mapping and derive, raising on names the file lacks or that collide."""
    inverse: dict[str, str] = {}
    for spec, file_column in table.columns.items():
        if file_column not in available:
            raise FileSourceError(
                f"columns.{spec}", _missing(file_column, available, where, "file column")
            )
        if file_column in inverse:
            raise FileSourceError(
                f"columns.{spec}",
                f"file column '{file_column}' is already mapped to '{inverse[file_column]}'",
            )
        inverse[file_column] = spec
    renamed = [inverse.get(c, c) for c in available]
    for name in renamed:
        if renamed.count(name) > 1:
            raise FileSourceError(f"columns.{name}", f"'{name}' would name two columns of {where}")
    for name, rule in table.derive.items():
        if rule.column not in renamed and rule.column not in inverse:
            raise FileSourceError(
                f"derive.{name}.column", _missing(rule.column, renamed, where, "column")
            )
    names = renamed + [name for name in table.derive if name not in renamed]
    if table.row_id:
        if table.row_id in names:
            raise FileSourceError("row_id", f"'{table.row_id}' already names a column of {where}")
        names = [table.row_id, *names]
    return names


def _file_columns(path: str, table: FileTable) -> list[str]:
    """Columns of one csv or parquet file, from its header or schema alone."""
    if table.format == "parquet":
        return list(_read_parquet(path, schema_only=True).columns)
    return list(_read_csv(path, table, nrows=0 if table.header else 1).columns)


def _same_layout(paths: list[str], columns: list[list[str]]) -> None:
    """A glob's files concatenate only when they have the same columns in the same order."""
    for path, found in zip(paths[1:], columns[1:], strict=True):
        if found != columns[0]:
            differ = sorted(set(found) ^ set(columns[0]))
            what = f"columns only one has: {short_list(differ)}" if differ else "column order"
            raise FileSourceError(
                "path",
                f"{path} and {paths[0]} differ ({what}); a glob must match files of one layout",
            )


def peek_columns(table: FileTable, base_dir: Path) -> list[str]:
    """Spec-side columns the table will have, as ``read_table`` will produce them.

    From the headers or schemas of a csv or parquet table's files, and from every line of a
    libsvm table's (streamed, cached per file).
    """
    paths = resolve_paths(table, base_dir)
    if table.format == "libsvm":
        available = libsvm_columns(paths, table, base_dir)
    else:
        layouts = [_file_columns(path, table) for path in paths]
        _same_layout(paths, layouts)
        available = layouts[0]
    return _spec_names(table, available, paths[0])


def _csv_blocks(path: str, table: FileTable, columns: list[str]) -> Iterator[pd.DataFrame]:
    options = _csv_options(table)
    if not table.header and not table.names:  # headerless without names: columns "0", "1", ...
        options["usecols"] = [int(c) for c in columns]
    else:
        options["usecols"] = columns
    try:
        for block in pd.read_csv(path, chunksize=VALUE_ROWS, **options):
            block.columns = [str(c) for c in block.columns]
            yield block
    except UnicodeDecodeError as err:
        raise _encoding_error(path, table.encoding, err) from None
    except (ValueError, OSError) as err:
        raise FileSourceError("format", f"cannot read {path} as csv: {reason(err)}") from None


def _parquet_blocks(path: str, columns: list[str]) -> Iterator[pd.DataFrame]:
    start = 0
    try:
        with fsspec.open(path, "rb") as handle:
            batches = pq.ParquetFile(handle).iter_batches(batch_size=VALUE_ROWS, columns=columns)
            for batch in batches:
                block = batch.to_pandas()
                block.index = pd.RangeIndex(start, start + len(block))
                start += len(block)
                yield block
    except (ValueError, OSError, TypeError) as err:
        raise FileSourceError("format", f"cannot read {path} as parquet: {reason(err)}") from None


def check_mapping(table: FileTable, base_dir: Path) -> None:
    """Cheap config-time check that every mapped and derived-from column exists in the file."""
    peek_columns(table, base_dir)


def check_file_values(table: FileTable, base_dir: Path) -> None:
    """Thorough config-time check that every file of the table parses as a run will parse it.

    Every value of the columns the YAML says how to parse (timestamps, ``derive`` sources) of a
    csv or parquet table, every line of a libsvm table: read a block at a time, so memory stays
    bounded whatever the file's size. ``playbook validate`` runs it; loading the code location
    does not (it would read whole files on every load).
    """
    paths = resolve_paths(table, base_dir)
    if table.format == "libsvm":
        for path in paths:
            check_lines(path)
        return
    columns = value_columns(table)
    for path in paths if columns else []:
        present = [c for c in columns if c in _file_columns(path, table)]
        if not present:
            continue  # a declared column the file lacks: the cheap checks report it
        if table.format == "parquet":
            check_values(table, path, _parquet_blocks(path, present), None)
        else:
            check_values(table, path, _csv_blocks(path, table, present), 2 if table.header else 1)


def read_table(
    table: FileTable, base_dir: Path, timestamp_columns: Sequence[str] | None = None
) -> pd.DataFrame:
    """Read, concatenate, rename to spec names, parse timestamps and add derived labels.

    ``timestamp_columns`` defaults to the ones the use case declared (``table.timestamp_columns``).
    """
    paths = resolve_paths(table, base_dir)
    if table.format == "libsvm":
        frame = read_libsvm(paths, table, base_dir)
    else:
        read = _read_parquet if table.format == "parquet" else lambda p: _read_csv(p, table)
        frames = [read(p) for p in paths]
        _same_layout(paths, [list(part.columns) for part in frames])
        frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    _spec_names(table, list(frame.columns), paths[0])
    frame = frame.rename(columns={f: s for s, f in table.columns.items()})
    if table.row_id:
        frame.insert(0, table.row_id, pd.RangeIndex(len(frame), dtype="int64").to_numpy())
    if timestamp_columns is None:
        timestamp_columns = table.timestamp_columns
    for column in timestamp_columns:
        if column in frame:
            frame[column] = timestamps(frame[column], column, table)
    for name, rule in table.derive.items():
        frame[name] = derived(frame, name, rule, table)
    return frame
