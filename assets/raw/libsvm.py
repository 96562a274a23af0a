"""libsvm / LETOR files: read them whole for a run, scan them whole (streaming) for validate.

Lines ``label qid:Q i:v ... # comment`` become ``label`` (int64 when every label is integral,
else float64), ``qid`` (int64, only when the file has ``qid:`` or a ``group_file`` is given) and
one float64 column ``f{i}`` per feature index seen anywhere in the file. A feature a line leaves
out is 0.0, the sparse-format convention, not NaN.

Validate used to look at the first 100 lines only, so a feature first used on line 500 (23 of a
real file's features) was "not in the file". ``libsvm_columns`` now reads every line of every
file, in blocks of ``BLOCK_BYTES`` (bounded memory whatever the file's size), finding feature
indices with vectorised byte tests rather than parsing values (about 100 MB/s on a shared 2-core
machine, 4x the parser): it runs on every load of the code location. Its answer is cached per file (path, size, modification time).
``check_lines``, which ``playbook validate`` adds, parses every line with the run's parser and
names the first line the run would reject.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import fsspec
import numpy as np
import pandas as pd

from assets.raw.file_common import FileSourceError, join_path, reason
from assets.raw.source_paths import OutsideRootsError, Roots, local_path
from configs.schema.source import FileTable

BLOCK_BYTES = 8 << 20  # text parsed at a time by libsvm_columns: its memory is a few times this
_QID = re.compile(rb"^[ \t]*[^#\s]+[ \t]+qid:(\S+)", re.MULTILINE)  # 2nd token, as sklearn
_FORMAT = "'label qid:Q i:v ... # comment'"
_CACHE_SIZE = 64
_MAX_DIGITS = 10  # of a feature index
_COLON, _HASH, _NEWLINE, _RETURN, _SPACE, _TAB, _ZERO = b":#\n\r \t0"


def _load(data: bytes | io.BufferedIOBase):
    from sklearn.datasets import load_svmlight_file  # deferred: sklearn is slow to import

    source = io.BytesIO(data) if isinstance(data, bytes) else data
    return load_svmlight_file(source, zero_based=True)


def read_libsvm_file(path: str) -> pd.DataFrame:
    """Parse with scikit-learn's compiled reader, then densify only the feature columns seen.

    qids are found with one regex pass instead of ``query_id=True``: scikit-learn grows its qid
    array with ``np.append`` per line, which is quadratic (minutes for a 1M-line LETOR file).
    """
    try:
        with fsspec.open(path, "rb") as handle:
            matrix, labels = _load(handle)
            handle.seek(0)
            qids = np.array(_QID.findall(handle.read())).astype(np.int64)
    except (ValueError, OSError) as err:
        raise FileSourceError(
            "format", f"cannot read {path} as libsvm ({_FORMAT}): {reason(err)}"
        ) from None
    if 0 < len(qids) < len(labels):
        raise FileSourceError("format", f"{path} has qid: on some lines but not on others")
    seen = np.unique(matrix.indices)  # explicit zeros are kept by the reader, so they count
    frame = pd.DataFrame(matrix[:, seen].toarray(), columns=[f"f{i}" for i in seen])
    frame.insert(0, "label", labels)
    if len(qids):
        frame.insert(1, "qid", qids)
    return frame


def group_sizes(table: FileTable, base_dir: Path, rows: int) -> np.ndarray:
    """The ``group_file``'s sizes, checked to be positive and to sum to the data's ``rows``."""
    path = join_path(base_dir, table.group_file or "")
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
    if sizes.sum() != rows:
        raise FileSourceError(
            "group_file",
            f"group sizes in {path} sum to {sizes.sum()} but the data has {rows} rows",
        )
    return sizes


def read_libsvm(paths: list[str], table: FileTable, base_dir: Path) -> pd.DataFrame:
    """All libsvm files as one frame: label, qid, then features in index order."""
    frame = pd.concat([read_libsvm_file(p) for p in paths], ignore_index=True)
    features = sorted((c for c in frame.columns if c[0] == "f"), key=lambda c: int(c[1:]))
    frame = frame[[c for c in ("label", "qid") if c in frame] + features]
    frame[features] = frame[features].fillna(0.0)  # files with different feature sets
    labels = frame["label"].to_numpy()
    if np.isfinite(labels).all() and (labels == np.round(labels)).all():
        frame["label"] = labels.astype(np.int64)
    if not table.group_file:
        return frame
    if "qid" in frame:
        raise FileSourceError("group_file", "the libsvm data already has qid:; drop group_file")
    sizes = group_sizes(table, base_dir, len(frame))
    frame.insert(1, "qid", np.repeat(np.arange(len(sizes), dtype=np.int64), sizes))
    return frame


@dataclass(frozen=True)
class LibsvmScan:
    """What a whole-file scan found: rows, rows with ``qid:``, and the feature indices used."""

    rows: int
    qid_rows: int
    indices: tuple[int, ...]


def _blocks(handle: io.BufferedIOBase) -> Iterator[tuple[int, bytes]]:
    """(number of the block's first line, block of whole lines), about ``BLOCK_BYTES`` each."""
    rest, line = b"", 1
    while True:
        chunk = handle.read(BLOCK_BYTES)
        data = rest + chunk
        cut = len(data) if not chunk else data.rfind(b"\n") + 1
        block, rest = data[:cut], data[cut:]
        if block:
            yield line, block
            line += block.count(b"\n")
        if not chunk:
            return


def _outside_comments(buf: np.ndarray, positions: np.ndarray, newlines: np.ndarray) -> np.ndarray:
    """The ``positions`` that no ``#`` earlier on their line turns into comment text."""
    hashes = np.flatnonzero(buf == _HASH)
    if not hashes.size or not positions.size:
        return positions
    line_start = np.concatenate(([-1], newlines))[np.searchsorted(newlines, positions)]
    first_hash = np.searchsorted(hashes, line_start)
    commented = (first_hash < hashes.size) & (
        hashes[np.minimum(first_hash, hashes.size - 1)] < positions
    )
    return positions[~commented]


def _index_tokens(buf: np.ndarray, colons: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each ``:``, the number written just before it and how many digits it has."""
    value = np.zeros(colons.size, np.int64)
    digits = np.zeros(colons.size, np.int64)
    alive = np.ones(colons.size, bool)
    for k in range(1, _MAX_DIGITS + 1):
        char = buf[np.maximum(colons - k, 0)].astype(np.int64)
        alive &= (colons - k >= 0) & (char >= _ZERO) & (char <= _ZERO + 9)
        if not alive.any():
            break
        value += np.where(alive, (char - _ZERO) * 10 ** (k - 1), 0)
        digits += alive
    return value, digits


def _after_blank(buf: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Whether the byte before each position is a space, a tab, or the start of the block."""
    before = buf[np.maximum(positions - 1, 0)]
    return (positions == 0) | (before == _SPACE) | (before == _TAB)


def _data_rows(block: bytes, buf: np.ndarray, newlines: np.ndarray) -> int:
    """Lines holding data: not blank and not only a comment (as the parser skips them)."""
    starts = np.concatenate(([0], newlines + 1))
    starts = starts[starts < buf.size]
    first = buf[starts]
    for i in np.flatnonzero((first == _SPACE) | (first == _TAB)):  # rare: indented lines
        end = block.find(b"\n", starts[i])
        rest = block[starts[i] : end if end >= 0 else len(block)].lstrip(b" \t")
        first[i] = rest[0] if rest else _NEWLINE
    return int(np.isin(first, (_HASH, _NEWLINE, _RETURN), invert=True).sum())


def _scan_block(block: bytes) -> LibsvmScan:
    """Feature indices, rows and qid rows of a block of whole lines, vectorised over its bytes.

    A feature token is ``digits:`` after a blank; ``qid:`` is the same after ``qid``; anything
    after ``#`` on a line is a comment. About 4x faster than parsing the values, which only the
    run (and ``check_lines``) needs.
    """
    buf = np.frombuffer(block, np.uint8)
    newlines = np.flatnonzero(buf == _NEWLINE)
    colons = _outside_comments(buf, np.flatnonzero(buf == _COLON), newlines)
    value, digits = _index_tokens(buf, colons)
    features = (digits > 0) & _after_blank(buf, colons - digits)
    qid = (digits == 0) & (colons >= 3)
    for k, char in enumerate(b"diq", start=1):  # "qid" read backwards from the colon
        qid &= buf[np.maximum(colons - k, 0)] == char
    qid &= _after_blank(buf, colons - 3)
    qid_rows = np.unique(np.searchsorted(newlines, colons[qid])).size
    indices = tuple(int(i) for i in np.unique(value[features]))
    return LibsvmScan(_data_rows(block, buf, newlines), qid_rows, indices)


def _scan(path: str) -> LibsvmScan:
    rows = qid_rows = 0
    seen: set[int] = set()
    try:
        with fsspec.open(path, "rb") as handle:
            for _, block in _blocks(handle):
                part = _scan_block(block)
                rows, qid_rows = rows + part.rows, qid_rows + part.qid_rows
                seen.update(part.indices)
    except OSError as err:
        raise FileSourceError("format", f"cannot read {path}: {reason(err)}") from None
    return LibsvmScan(rows, qid_rows, tuple(sorted(seen)))


def check_lines(path: str) -> None:
    """Parse every line with the run's parser, a block at a time; name the first bad line.

    Slower than the column scan (it converts every value), so only ``playbook validate`` runs
    it, not every load of the code location.
    """
    try:
        with fsspec.open(path, "rb") as handle:
            for first, block in _blocks(handle):
                try:
                    _load(block)
                    np.array(_QID.findall(block)).astype(np.int64)
                except ValueError as err:
                    raise _bad_line(path, first, block, err) from None
    except OSError as err:
        raise FileSourceError("format", f"cannot read {path}: {reason(err)}") from None


def _bad_line(path: str, first: int, block: bytes, err: ValueError) -> FileSourceError:
    """Name the first line of ``block`` the parser rejects (only run once a block failed)."""
    for offset, text in enumerate(block.splitlines()):
        try:
            _load(text + b"\n")
            np.array(_QID.findall(text)).astype(np.int64)
        except ValueError as found:
            line, err = first + offset, found
            break
    else:
        line = first
    return FileSourceError(
        "format", f"cannot read {path} as libsvm ({_FORMAT}): line {line}: {reason(err)}"
    )


_scans: dict[tuple[str, int, int], LibsvmScan] = {}


def scan_file(path: str) -> LibsvmScan:
    """Every line of one file, parsed as a run parses it; cached while the file is unchanged."""
    local = local_path(path)
    if local is None:
        return _scan(path)  # a remote file: no cheap way to know it is unchanged
    stat = os.stat(local)
    key = (os.path.realpath(local), stat.st_size, stat.st_mtime_ns)
    if key not in _scans:
        if len(_scans) >= _CACHE_SIZE:
            _scans.pop(next(iter(_scans)))
        _scans[key] = _scan(path)
    return _scans[key]


def libsvm_columns(paths: list[str], table: FileTable, base_dir: Path) -> list[str]:
    """The columns ``read_libsvm`` will produce, from a streaming scan of every file.

    Also fails where the run would on ``qid:`` found on some lines only, or a ``group_file``
    whose sizes do not add up to the data's rows.
    """
    scans = [scan_file(path) for path in paths]
    for path, scan in zip(paths, scans, strict=True):
        if 0 < scan.qid_rows < scan.rows:
            raise FileSourceError("format", f"{path} has qid: on some lines but not on others")
    has_qid = any(scan.qid_rows for scan in scans)
    if table.group_file:
        if has_qid:
            raise FileSourceError("group_file", "the libsvm data already has qid:; drop group_file")
        group_sizes(table, base_dir, sum(scan.rows for scan in scans))
    indices = sorted({index for scan in scans for index in scan.indices})
    qid = ["qid"] if has_qid or table.group_file else []
    return ["label", *qid, *[f"f{i}" for i in indices]]
