"""Reads one ``FileTable`` (csv, parquet or libsvm; one path or a glob) into a pandas frame.

Anything a user can get wrong in the YAML (a path matching nothing, a column-name typo, the wrong
encoding, an unparseable timestamp) raises ``FileSourceError`` naming the FileTable field to fix,
so config validation can point at the YAML line instead of showing a pandas trace.

libsvm / LETOR lines ``label qid:Q i:v ... # comment`` become ``label`` (int64 when every label is
integral, else float64), ``qid`` (int64, only when the file has ``qid:`` or a ``group_file`` is
given) and one float64 column ``f{i}`` per feature index seen anywhere in the file. A feature a line
leaves out is 0.0, the sparse-format convention, not NaN. ``peek_columns`` reads only the first
lines, so for libsvm it sees the features those lines use (all of them for dense LETOR files).
"""

from __future__ import annotations

import codecs
import difflib
import glob
import itertools
import operator
import re
from collections.abc import Sequence
from pathlib import Path

import fsspec
import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from assets.raw.source_paths import OutsideRootsError, Roots
from configs.schema.source import FileTable, LabelRule

_OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt,
        "==": operator.eq, "!=": operator.ne}  # fmt: skip
_PEEK_LINES = 100  # libsvm lines scanned by peek_columns; enough for any dense LETOR file
_MAX_LISTED = 20  # columns listed in a not-found message before it is cut short
_QUOTED = re.compile(r"b?'[^']*'|b?\"[^\"]*\"")  # quoted bits of a reader's error: file text
_MAX_REASON = 300  # characters of a reader's error kept in a message
_QID = re.compile(rb"^[ \t]*[^#\s]+[ \t]+qid:(\S+)", re.MULTILINE)  # 2nd token, as sklearn


class FileSourceError(ValueError):
    """A FileTable that cannot be read as written.

    ``field`` is the dotted path inside the FileTable (``path``, ``columns.user_id``,
    ``timestamp_unit``) so the config loader can map it to a YAML line; ``message`` says what was
    expected.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _join(base_dir: Path, path: str) -> str:
    """Anchor a relative path at the YAML's folder; absolute paths and fsspec URLs stay as they are."""
    if "://" in path:
        return path
    candidate = Path(path).expanduser()
    return str(candidate if candidate.is_absolute() else Path(base_dir) / candidate)


def resolve_paths(table: FileTable, base_dir: Path) -> list[str]:
    """Files the table's path or glob matches, sorted so that concatenation is reproducible.

    Only files inside the allowed roots (``assets.raw.source_paths``): the glob's fixed folders
    are checked before anything is listed, each match (symlinks followed) after.
    """
    pattern = _join(base_dir, table.path)
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


def _reason(err: Exception) -> str:
    """A reader's error without the text it quotes from the file: messages show no data."""
    return _QUOTED.sub("'...'", str(err))[:_MAX_REASON]


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
            f"cannot read {path} as csv with separator {table.separator!r}: {_reason(err)}",
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
        raise FileSourceError("format", f"cannot read {path} as parquet: {_reason(err)}") from None
    named_index = any(name is not None for name in frame.index.names)
    return frame.reset_index(drop=not named_index)


def _libsvm_head(path: str) -> tuple[bool, list[int]]:
    """Whether the first lines carry ``qid:`` and which feature indices they use."""
    has_qid, indices = False, set()
    with fsspec.open(path, "rb") as handle:
        for raw in itertools.islice(handle, _PEEK_LINES):
            for token in raw.decode("latin-1").split("#", 1)[0].split()[1:]:
                key = token.split(":", 1)[0]
                has_qid |= key == "qid"
                if key.isdigit():
                    indices.add(int(key))
    return has_qid, sorted(indices)


def _read_libsvm_file(path: str) -> pd.DataFrame:
    """Parse with scikit-learn's compiled reader, then densify only the feature columns seen.

    qids are found with one regex pass instead of ``query_id=True``: scikit-learn grows its qid
    array with ``np.append`` per line, which is quadratic (minutes for a 1M-line LETOR file).
    """
    from sklearn.datasets import load_svmlight_file  # deferred: sklearn is slow to import

    try:
        with fsspec.open(path, "rb") as handle:
            matrix, labels = load_svmlight_file(handle, zero_based=True)
            handle.seek(0)
            qids = np.array(_QID.findall(handle.read())).astype(np.int64)
    except (ValueError, OSError) as err:
        raise FileSourceError(
            "format",
            f"cannot read {path} as libsvm ('label qid:Q i:v ... # comment'): {_reason(err)}",
        ) from None
    if 0 < len(qids) < len(labels):
        raise FileSourceError("format", f"{path} has qid: on some lines but not on others")
    seen = np.unique(matrix.indices)  # explicit zeros are kept by the reader, so they count
    frame = pd.DataFrame(matrix[:, seen].toarray(), columns=[f"f{i}" for i in seen])
    frame.insert(0, "label", labels)
    if len(qids):
        frame.insert(1, "qid", qids)
    return frame


def _apply_groups(frame: pd.DataFrame, table: FileTable, base_dir: Path) -> pd.DataFrame:
    """Turn LightGBM-style group sizes into consecutive qids 0..n-1."""
    path = _join(base_dir, table.group_file or "")
    if "qid" in frame:
        raise FileSourceError("group_file", "the libsvm data already has qid:; drop group_file")
    try:
        Roots(table, base_dir).check_files("group_file", [path])
    except OutsideRootsError as err:
        raise FileSourceError(err.field, err.message) from None
    try:
        with fsspec.open(path, "rt") as handle:
            sizes = np.array([int(token) for token in handle.read().split()], dtype=np.int64)
    except OSError as err:
        raise FileSourceError("group_file", f"cannot read {path}: {err}") from None
    except ValueError:
        sizes = np.array([-1])
    if (sizes <= 0).any():
        raise FileSourceError("group_file", f"{path} should hold one positive group size a line")
    if sizes.sum() != len(frame):
        raise FileSourceError(
            "group_file",
            f"group sizes in {path} sum to {sizes.sum()} but the data has {len(frame)} rows",
        )
    frame.insert(1, "qid", np.repeat(np.arange(len(sizes), dtype=np.int64), sizes))
    return frame


def _read_libsvm(paths: list[str], table: FileTable, base_dir: Path) -> pd.DataFrame:
    """All libsvm files as one frame: label, qid, then features in index order."""
    frame = pd.concat([_read_libsvm_file(p) for p in paths], ignore_index=True)
    features = sorted((c for c in frame.columns if c[0] == "f"), key=lambda c: int(c[1:]))
    frame = frame[[c for c in ("label", "qid") if c in frame] + features]
    frame[features] = frame[features].fillna(0.0)  # files with different feature sets
    labels = frame["label"].to_numpy()
    if np.isfinite(labels).all() and (labels == np.round(labels)).all():
        frame["label"] = labels.astype(np.int64)
    return _apply_groups(frame, table, base_dir) if table.group_file else frame


def _missing(name: str, available: list[str], where: str, kind: str) -> str:
    """Not-found message listing what exists, with a did-you-mean for typos."""
    listed = ", ".join(available[:_MAX_LISTED])
    if len(available) > _MAX_LISTED:
        listed += f", ... ({len(available)} columns)"
    close = difflib.get_close_matches(name, available, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"{kind} '{name}' not found in {where}; it has: {listed}{hint}"


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


def peek_columns(table: FileTable, base_dir: Path) -> list[str]:
    """Spec-side columns the table will have, from the first file's header/schema/first lines."""
    first = resolve_paths(table, base_dir)[0]
    if table.format == "csv":
        available = list(_read_csv(first, table, nrows=0 if table.header else 1).columns)
    elif table.format == "parquet":
        available = list(_read_parquet(first, schema_only=True).columns)
    else:
        has_qid, indices = _libsvm_head(first)
        qid = ["qid"] if has_qid or table.group_file else []
        available = ["label", *qid, *[f"f{i}" for i in indices]]
    return _spec_names(table, available, first)


def check_mapping(table: FileTable, base_dir: Path) -> None:
    """Cheap config-time check that every mapped and derived-from column exists in the file."""
    peek_columns(table, base_dir)


def _bad_rows(raw: pd.Series, failed: pd.Series, field: str, column: str, expected: str) -> None:
    """Raise naming the first value that did not parse (missing values are allowed)."""
    bad = (failed & raw.notna()).to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise FileSourceError(
            field,
            f"column '{column}' should hold {expected}; {int(bad.sum())} rows do not, "
            f"e.g. row {row}",
        )


def _timestamps(raw: pd.Series, column: str, table: FileTable) -> pd.Series:
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


def _derive(frame: pd.DataFrame, name: str, rule: LabelRule, table: FileTable) -> pd.Series:
    """0/1 int8 column from a numeric rule; the rule may name the spec or the file column."""
    field = f"derive.{name}.column"
    inverse = {file_column: spec for spec, file_column in table.columns.items()}
    values = frame[rule.column if rule.column in frame else inverse[rule.column]]
    if not pd.api.types.is_numeric_dtype(values):
        raise FileSourceError(
            field, f"column '{rule.column}' is not numeric (dtype {values.dtype})"
        )
    if values.isna().any():
        row = int(np.flatnonzero(values.isna().to_numpy())[0])
        raise FileSourceError(
            field,
            f"column '{rule.column}' has missing values (e.g. row {row}); derive needs numbers",
        )
    return _OPS[rule.op](values, rule.value).astype(np.int8)


def read_table(
    table: FileTable, base_dir: Path, timestamp_columns: Sequence[str] = ()
) -> pd.DataFrame:
    """Read, concatenate, rename to spec names, parse timestamps and add derived labels."""
    paths = resolve_paths(table, base_dir)
    if table.format == "libsvm":
        frame = _read_libsvm(paths, table, base_dir)
    else:
        read = _read_parquet if table.format == "parquet" else lambda p: _read_csv(p, table)
        frames = [read(p) for p in paths]
        for path, part in zip(paths[1:], frames[1:], strict=True):
            if list(part.columns) != list(frames[0].columns):
                raise FileSourceError(
                    "path",
                    f"{path} has columns {list(part.columns)} but {paths[0]} has "
                    f"{list(frames[0].columns)}; a glob must match files of one layout",
                )
        frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    _spec_names(table, list(frame.columns), paths[0])
    frame = frame.rename(columns={f: s for s, f in table.columns.items()})
    if table.row_id:
        frame.insert(0, table.row_id, pd.RangeIndex(len(frame), dtype="int64").to_numpy())
    for column in timestamp_columns:
        if column in frame:
            frame[column] = _timestamps(frame[column], column, table)
    for name, rule in table.derive.items():
        frame[name] = _derive(frame, name, rule, table)
    return frame
