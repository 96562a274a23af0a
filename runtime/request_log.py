"""The request log: one SQLite row per served request, for monitoring and A/B analysis.

Each row records when, which endpoint, the unit and its experiment arm, the request as sent
(ids such as ``transaction_id`` join it to labels that arrive later), the model versions used,
the feature values the models saw, the scores and the answer, how many feature-store misses were
filled with defaults, and the latency. Writes go through a queue to one background thread that
commits in batches, so a request never waits on the disk; :meth:`RequestLog.flush` waits
for everything queued so far (tests, shutdown). The queue is a ``collections.deque``, which the
answering thread appends to in C, taking no lock and waking nobody; the writer looks every
``every_s`` (50 ms) and takes what has come. Woken by every row, as it was first, it committed a
few rows at a time, hundreds of times a second under load, each wake-up taking the interpreter's
lock in the middle of a request; behind a ``queue.Queue`` with a lingering writer, the ``put``
and its ``notify`` were still 6 % of a fraud worker's samples in py-spy. SQLite in WAL mode
lets analysis read while the service writes.

Every JSON column is strict JSON: a non-finite number (NaN, Infinity, as numpy and Python floats
can hold) is stored as null, so no ``NaN`` / ``Infinity`` token (which is not JSON) is ever
written, and the row stays readable by any JSON reader. Logging never fails a request: a row that
cannot be encoded is dropped and said in the service's log (:attr:`RequestLog.dropped` counts
them), and a batch with a row the table refuses (a constraint) is retried row by row, so that
row loses only itself.

Reading is strict the other way round: :func:`load_request_log` turns the raw rows into a typed
frame plus the rows it could not read, each with its reason (:mod:`runtime.request_log_frame`
for the frame, :mod:`runtime.request_log_rules` for what makes one row readable);
every reader of the log (performance monitoring, A/B analysis) goes through it, so a row written
by an older version, by hand or by a hostile client is skipped and counted, never a crash.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pandas as pd

from runtime.request_log_frame import RAW_COLUMNS, RequestLogRows, parse_request_log
from runtime.request_log_rules import Need, NotUtf8

if TYPE_CHECKING:
    from configs.schema.usecase import UseCaseSpec

TABLE = "requests"
# set on a request the service failed to answer; a log written before it has no such column,
# which readers tell apart from "no failures" (the error_rate guardrail is then unavailable)
ERROR_COLUMN = "error"
log = logging.getLogger(__name__)
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    logged_at REAL NOT NULL,
    endpoint TEXT NOT NULL,
    unit TEXT,
    arm TEXT,
    request TEXT NOT NULL,
    model_versions TEXT NOT NULL,
    features TEXT NOT NULL,
    scores TEXT NOT NULL,
    response TEXT NOT NULL,
    feature_misses INTEGER NOT NULL,
    latency_ms REAL NOT NULL,
    error TEXT
)
"""
_INSERT = (
    f"INSERT INTO {TABLE} (logged_at, endpoint, unit, arm, request, model_versions, features,"
    " scores, response, feature_misses, latency_ms, error)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_STOP = object()


def _add_missing_columns(connection: sqlite3.Connection) -> None:
    """Bring a log written by an older version up to this schema (new columns read as null)."""
    have = {row[1] for row in connection.execute(f"PRAGMA table_info({TABLE})")}
    for line in _SCHEMA.splitlines():
        parts = line.strip().rstrip(",").split()
        if len(parts) >= 2 and parts[1] in ("TEXT", "REAL", "INTEGER") and parts[0] not in have:
            connection.execute(f"ALTER TABLE {TABLE} ADD COLUMN {parts[0]} {parts[1]}")


# Types json.dumps writes as they are: answered before any isinstance test. The log holds every
# served item's features (history lists included), a few hundred thousand values a second on the
# feed, and the isinstance chain below was a sixth of a feed request's CPU.
_PLAIN_TYPES = frozenset({str, int, bool, type(None)})


def plain_json_value(value: Any) -> Any:
    """JSON for numpy scalars/arrays and timestamps; NaN, infinities and pandas' NA as null."""
    kind = type(value)
    if kind in _PLAIN_TYPES:
        return value
    if kind is float:
        return value if math.isfinite(value) else None
    if kind is dict:
        return {
            k if type(k) is str else str(k): v if type(v) in _PLAIN_TYPES else plain_json_value(v)
            for k, v in value.items()
        }
    if kind is list:
        return [v if type(v) in _PLAIN_TYPES else plain_json_value(v) for v in value]
    return _converted(value)


def _converted(value: Any) -> Any:
    """:func:`plain_json_value` of anything but the plain types, dicts and lists."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.ndarray):
        return [plain_json_value(v) for v in value.tolist()]
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): plain_json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_json_value(v) for v in value]
    return value


def frame_records(frame: pd.DataFrame, skip: Sequence[str] = ()) -> list[dict[str, Any]]:
    """``frame.to_dict("records")`` without the ``skip`` columns, built a column at a time.

    The log's feature rows: ``to_dict`` boxes every value on its own and was a tenth of a feed
    request (with a ``drop`` that copied all the candidates to leave two columns out).
    ``Series.tolist`` gives the same Python values (floats, ints, ``Timestamp`` s) per column.
    """
    columns = [c for c in frame.columns if c not in skip]
    if not columns:
        return [{} for _ in range(len(frame))]
    values = [frame[c].tolist() for c in columns]
    return [dict(zip(columns, row, strict=True)) for row in zip(*values, strict=True)]


# the fallback, built once: ``json.dumps`` with options builds a new encoder on every call
_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str, allow_nan=False)
# numpy scalars and arrays written by orjson itself; dict keys must be text (else the fallback)
_ORJSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


def _orjson_default(value: Any) -> Any:
    """What orjson cannot write itself, as :func:`plain_json_value` turns it: pandas' NA and
    NaT as null, an object array (orjson writes numeric ones) as its list, an unknown object
    as its text."""
    converted = _converted(value)
    return str(value) if converted is value else converted


def to_json(value: Any) -> str:
    """Strict JSON text of ``value``: non-finite numbers as null, never an ``Infinity`` token;
    numpy scalars and arrays, timestamps and pandas' NA as :func:`plain_json_value` writes them;
    unknown objects as text.

    Written by orjson, which writes a request's five log columns in about a tenth of the standard
    encoder's time (fraud: 4-5 against 52-73 us a request, the same text; the feed 18-21 against
    230-240 us): fraud's in-process CPU per request fell to 0.86x. What orjson refuses (an integer
    beyond 64 bits, a non-text dict key, a lone surrogate, nesting past 254 levels) goes through
    :func:`plain_json_value` and the standard encoder, as everything did before. Some texts differ
    from that encoder's, with the same meaning: non-ASCII characters are written as UTF-8, not
    escaped, and a float32 as its shortest text (0.1, not 0.10000000149011612); a numpy
    ``datetime64`` (which the handlers do not log) becomes RFC 3339 text, not its ``item()``.
    """
    try:
        return orjson.dumps(value, default=_orjson_default, option=_ORJSON_OPTIONS).decode()
    except orjson.JSONEncodeError:
        return _ENCODER.encode(plain_json_value(value))


class RequestLog:
    """Append-only request log in ``path`` (SQLite), written by a background thread."""

    def __init__(self, path: str | Path, batch: int = 1024, every_s: float = 0.05) -> None:
        """Rows are committed every ``every_s`` seconds, at most ``batch`` per transaction."""
        if every_s <= 0 or batch < 1:
            raise ValueError(f"every_s must be > 0 and batch >= 1, got {every_s} and {batch}")
        self.path = Path(path)
        self._every_s = every_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._pending: deque[tuple | threading.Event | object] = deque()
        self._wake = threading.Event()  # set by flush and close only: rows wait for the round
        self._batch = batch
        self.dropped = 0  # rows that could not be encoded or stored
        self._lost_lock = threading.Lock()
        with self._connect() as connection:
            connection.execute(_SCHEMA)
            _add_missing_columns(connection)
        self._thread = threading.Thread(target=self._run, name="request-log", daemon=True)
        self._thread.start()

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, timeout=30)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        return connection

    def write(
        self,
        *,
        endpoint: str,
        unit: Any,
        arm: str | None,
        request: Any,
        model_versions: Mapping[str, str],
        features: Any,
        scores: Any,
        response: Any,
        feature_misses: int,
        latency_ms: float,
        error: str | None = None,
    ) -> None:
        """Queue one row; returns at once, and never raises: a row that cannot be encoded
        (a circular structure, say) is dropped and logged, the request is still answered.

        ``error`` is set on a request the service failed to answer (the exception's type), so
        an experiment's ``error_rate`` guardrail counts failures per arm; null when served."""
        try:
            row = (
                time.time(),
                str(endpoint),
                None if unit is None else str(unit),
                None if arm is None else str(arm),
                to_json(request),
                to_json(model_versions),
                to_json(features),
                to_json(scores),
                to_json(response),
                int(feature_misses),
                _finite(latency_ms),
                None if error is None else str(error)[:200],
            )
        except Exception as error:  # logging must never fail a request
            self._lost(1, f"a {endpoint} row could not be encoded ({error!r})")
            return
        self._pending.append(row)

    def _lost(self, rows: int, why: str) -> None:
        """Count lost rows and say so, at the 1st, 10th, 100th... so a flood cannot flood the
        service's own log."""
        with self._lost_lock:
            before, self.dropped = self.dropped, self.dropped + rows
        if len(str(before)) != len(str(self.dropped)) or before == 0:
            log.warning("request log %s: %s; %d rows lost so far", self.path, why, self.dropped)

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every row queued before this call is committed."""
        done = threading.Event()
        self._pending.append(done)
        self._wake.set()
        if not done.wait(timeout):
            raise TimeoutError(f"request log {self.path} did not flush within {timeout}s")

    def close(self) -> None:
        self._pending.append(_STOP)
        self._wake.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        connection = self._connect()
        pending = self._pending
        try:
            while True:
                self._wake.wait(self._every_s)  # the interpreter's lock is released
                self._wake.clear()
                taken = self._batch
                while taken == self._batch:  # a full batch: more may be waiting
                    items = []
                    while pending and len(items) < self._batch:
                        items.append(pending.popleft())
                    taken = len(items)
                    rows = [i for i in items if isinstance(i, tuple)]
                    if rows:
                        self._insert(connection, rows)
                    for item in items:
                        if isinstance(item, threading.Event):
                            item.set()
                    if any(item is _STOP for item in items):
                        return
        finally:
            connection.close()

    def _insert(self, connection: sqlite3.Connection, rows: list[tuple]) -> None:
        """Commit ``rows``; when a row breaks a constraint, row by row, so one bad row loses only
        itself. Any other error (disk full) loses the batch: keep serving, count it, say it."""
        try:
            connection.executemany(_INSERT, rows)
            connection.commit()
            return
        except sqlite3.IntegrityError:
            connection.rollback()
        except sqlite3.Error as error:
            connection.rollback()
            self._lost(len(rows), f"a batch was not written ({error})")
            return
        for row in rows:
            try:
                connection.execute(_INSERT, row)
                connection.commit()
            except sqlite3.Error as error:
                connection.rollback()
                self._lost(1, f"a row was refused ({error})")


def _finite(value: Any) -> float:
    """A latency as a finite float; anything else is a row that cannot be encoded."""
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"latency_ms {value!r} is not a finite number")
    return number


def _text(raw: bytes) -> str | bytes:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return NotUtf8(raw)


def declared_types(spec: UseCaseSpec) -> dict[str, str]:
    """The events columns' dtypes: a logged request's field of that name must be of that type."""
    return {name: column.dtype for name, column in spec.events.columns.items()}


def load_request_log(
    path: str | Path,
    types: Mapping[str, str] | None = None,
    needs: Sequence[Need] = (),
    endpoint: str | None = None,
) -> RequestLogRows:
    """The log at ``path`` through :func:`parse_request_log` (no file or no table yet: no rows).
    Values are read as SQLite stored them, text that is not UTF-8 included, so no row can stop
    the read; a file that is not SQLite at all still raises (that is no row's fault)."""
    path = Path(path)
    raw = pd.DataFrame(columns=list(RAW_COLUMNS))
    try:
        raw = _raw_rows(path, str) if path.exists() else raw
    except sqlite3.OperationalError as error:
        message = str(error).lower()
        if "decode" in message:  # "Could not decode to UTF-8": read again, keeping those bytes
            raw = _raw_rows(path, _text)
        elif "no such table" not in message:
            raise
    return parse_request_log(raw, types, needs, endpoint)


def _raw_rows(path: Path, text_factory: Any) -> pd.DataFrame:
    """Every row as stored (no type inference: a text in a REAL column stays a text)."""
    connection = sqlite3.connect(path, timeout=30)
    try:
        connection.text_factory = text_factory
        cursor = connection.execute(f"SELECT * FROM {TABLE} ORDER BY id")
        names = [d[0] for d in cursor.description]
        return pd.DataFrame(cursor.fetchall(), columns=names, dtype=object)
    finally:
        connection.close()


def served(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of requests that were answered: a failed request (``error`` set) has no scores
    or features to monitor; a log written before failures were logged has no such rows."""
    if ERROR_COLUMN not in frame.columns:
        return frame
    return frame[frame[ERROR_COLUMN].isna()].reset_index(drop=True)


def read_request_log(path: str | Path) -> pd.DataFrame:
    """The readable rows of the log, JSON columns decoded (:func:`load_request_log`'s frame);
    rows it skipped are logged here, readers that report them use :func:`load_request_log`."""
    rows = load_request_log(path)
    if rows.unreadable:
        log.warning("request log %s: %s", path, rows.describe())
    return rows.frame
