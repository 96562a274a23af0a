"""The request log: one SQLite row per served request, for monitoring and A/B analysis.

Each row records when, which endpoint, the unit and its experiment arm, the request as sent
(ids such as ``transaction_id`` join it to labels that arrive later), the model versions used,
the feature values the models saw, the scores and the answer, how many feature-store misses were
filled with defaults, and the latency. Writes go through a queue to one background thread that
commits in small batches, so a request never waits on the disk; :meth:`RequestLog.flush` waits
for everything queued so far (tests, shutdown). SQLite in WAL mode lets analysis read while the
service writes.
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

TABLE = "requests"
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
    latency_ms REAL NOT NULL
)
"""
_INSERT = (
    f"INSERT INTO {TABLE} (logged_at, endpoint, unit, arm, request, model_versions, features,"
    " scores, response, feature_misses, latency_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_STOP = object()


def _add_missing_columns(connection: sqlite3.Connection) -> None:
    """Bring a log written by an older version up to this schema (new columns read as null)."""
    have = {row[1] for row in connection.execute(f"PRAGMA table_info({TABLE})")}
    for line in _SCHEMA.splitlines():
        parts = line.strip().rstrip(",").split()
        if len(parts) >= 2 and parts[1] in ("TEXT", "REAL", "INTEGER") and parts[0] not in have:
            connection.execute(f"ALTER TABLE {TABLE} ADD COLUMN {parts[0]} {parts[1]}")


def _plain(value: Any) -> Any:
    """JSON for numpy scalars/arrays, timestamps and NaN (as null)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def to_json(value: Any) -> str:
    return json.dumps(_plain(value), separators=(",", ":"), default=str)


class RequestLog:
    """Append-only request log in ``path`` (SQLite), written by a background thread."""

    def __init__(self, path: str | Path, batch: int = 256) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._queue: queue.Queue = queue.Queue()
        self._batch = batch
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
    ) -> None:
        """Queue one row; returns at once."""
        self._queue.put(
            (
                time.time(),
                endpoint,
                None if unit is None else str(unit),
                arm,
                to_json(request),
                to_json(model_versions),
                to_json(features),
                to_json(scores),
                to_json(response),
                int(feature_misses),
                float(latency_ms),
            )
        )

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every row queued before this call is committed."""
        done = threading.Event()
        self._queue.put(done)
        if not done.wait(timeout):
            raise TimeoutError(f"request log {self.path} did not flush within {timeout}s")

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        connection = self._connect()
        try:
            while True:
                items = [self._queue.get()]
                while len(items) < self._batch:
                    try:
                        items.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                rows = [i for i in items if isinstance(i, tuple)]
                if rows:
                    try:
                        connection.executemany(_INSERT, rows)
                        connection.commit()
                    except sqlite3.Error:  # keep serving; the rows are lost, and said so
                        log.exception("request log %s: %d rows not written", self.path, len(rows))
                for item in items:
                    if isinstance(item, threading.Event):
                        item.set()
                if any(item is _STOP for item in items):
                    return
        finally:
            connection.close()


def read_request_log(path: str | Path) -> pd.DataFrame:
    """The whole log as a frame, JSON columns decoded."""
    with sqlite3.connect(Path(path)) as connection:
        frame = pd.read_sql_query(f"SELECT * FROM {TABLE} ORDER BY id", connection)
    for column in ("request", "model_versions", "features", "scores", "response"):
        frame[column] = frame[column].map(lambda text: None if text is None else json.loads(text))
    return frame
