"""The request log: rows written by the background thread, JSON round trip, NaN as null."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import numpy as np

from runtime.request_log import RequestLog, read_request_log


def test_rows_from_many_threads_are_all_logged(tmp_path: Path) -> None:
    log = RequestLog(tmp_path / "log.sqlite")

    def work(worker: int) -> None:
        for i in range(50):
            log.write(
                endpoint="score",
                unit=worker * 100 + i,
                arm="champion",
                request={"transaction": {"transaction_id": worker * 100 + i}},
                model_versions={"scorer": "3"},
                features={"amount": np.float64(1.5), "missing": float("nan")},
                scores={"probability": np.float32(0.25)},
                response={"decision": "approve"},
                feature_misses=1,
                latency_ms=2.0,
            )

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.flush()
    frame = read_request_log(tmp_path / "log.sqlite")
    log.close()
    assert len(frame) == 200 and frame["unit"].nunique() == 200
    row = frame.iloc[0]
    assert row["features"] == {"amount": 1.5, "missing": None}
    assert row["scores"] == {"probability": 0.25}
    ids = frame["request"].map(lambda r: r["transaction"]["transaction_id"])
    assert sorted(ids) == sorted(int(u) for u in frame["unit"])
    assert row["model_versions"] == {"scorer": "3"} and row["feature_misses"] == 1


def test_a_log_from_an_older_schema_gains_the_new_columns(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as connection:
        connection.execute(
            "CREATE TABLE requests (id INTEGER PRIMARY KEY AUTOINCREMENT, logged_at REAL NOT NULL,"
            " endpoint TEXT NOT NULL, unit TEXT, arm TEXT, model_versions TEXT NOT NULL,"
            " features TEXT NOT NULL, scores TEXT NOT NULL, response TEXT NOT NULL,"
            " feature_misses INTEGER NOT NULL, latency_ms REAL NOT NULL)"
        )
        connection.execute(
            "INSERT INTO requests (logged_at, endpoint, model_versions, features, scores,"
            " response, feature_misses, latency_ms) VALUES (1, 'score', '{}', '{}', '{}', '{}', 0, 1)"
        )
    log = RequestLog(path)
    _write(log, 1, request={"transaction": {"card_id": 1}})
    log.flush()
    log.close()
    frame = read_request_log(path)
    assert len(frame) == 2 and frame["request"].tolist() == [None, {"transaction": {"card_id": 1}}]


def test_rows_are_committed_in_order_without_a_flush_and_past_one_batch(tmp_path: Path) -> None:
    """Writing wakes nobody: the writer takes what has come every ``every_s``, and keeps taking
    full batches until it has caught up; close commits what is left."""
    path = tmp_path / "log.sqlite"
    log = RequestLog(path, batch=16, every_s=0.02)
    for unit in range(100):
        _write(log, unit)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _count(path) < 100:
        time.sleep(0.01)
    assert _count(path) == 100
    _write(log, 100)
    log.close()
    assert read_request_log(path)["unit"].tolist() == [str(u) for u in range(101)]


def _write(log: RequestLog, unit: int, request: dict | None = None) -> None:
    log.write(
        endpoint="score",
        unit=unit,
        arm="champion",
        request=request or {},
        model_versions={},
        features={},
        scores={},
        response={},
        feature_misses=0,
        latency_ms=1.0,
    )


def _count(path: Path) -> int:
    with sqlite3.connect(path) as connection:
        return connection.execute("SELECT COUNT(*) FROM requests").fetchone()[0]
