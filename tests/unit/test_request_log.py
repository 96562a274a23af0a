"""The request log: rows written by the background thread, JSON round trip, NaN as null."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from serving.request_log import RequestLog, read_request_log


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
