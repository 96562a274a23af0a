"""Hostile input over HTTP: each endpoint, served for real, refuses 500+ bad bodies quickly.

Issue 18 sent about 1,200 hostile bodies to the served endpoints and got 69 answers of 5xx
(ids past int64 reaching Feast, 1,000 levels of nesting held 30 s, times past pandas' range,
multipart bodies) and some bad requests accepted and logged. Here each endpoint is served by a
real ``bentoml serve`` of its use case's bundle (the suite's small worlds), and a seeded corpus
(``tests/integration/hostile_bodies.py``) is sent one request at a time: every answer must be
413, 415 or 422 with ``{"error", "field"}`` (no 5xx, no BentoML 400, nothing served), the 99th
percentile of their latencies at most 100 ms, none over a second; after the corpus a good
request gets the same answer it got before, and the health counters and request log hold only
the good requests.

The service is the use case's built Bento, served by tag as the README shows; the suite's built
worlds are rebuilt whenever the code they come from changes (``served.source_hash``), so the
Bento carries this tree's ``serving/`` and ``runtime/``.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from runtime.request_log import read_request_log
from tests.integration.hostile_bodies import Hostile, corpus
from tests.integration.served import bento_server, materialized_home

pytestmark = pytest.mark.integration

ENDPOINTS = {"fraud": "score", "feed": "recommend", "search": "search"}
AS_OF = "2026-11-20T12:00:00Z"
REFUSED = {413, 415, 422}
P99_LIMIT_MS = 100.0
MAX_LIMIT_MS = 1000.0


def _good_body(home: Path, use_case: str) -> tuple[dict, dict]:
    """A valid body from the raw events, and its fields: path -> (kind, required)."""
    files = sorted((home / "tables" / use_case / "raw_events").rglob("*.parquet"))
    row = pd.read_parquet(files[-1]).iloc[-1]
    if use_case == "fraud":
        transaction = {
            "transaction_id": int(row.transaction_id),
            "card_id": int(row.card_id),
            "merchant_id": int(row.merchant_id),
            "amount": float(row.amount),
            "event_time": AS_OF,
            "mcc": str(row.mcc),
            "hour": int(row.hour),
            "channel": str(row.channel),
        }
        kinds = {
            "transaction_id": ("id", False),
            "card_id": ("id", True),
            "merchant_id": ("id", True),
            "amount": ("amount", False),
            "event_time": ("time", False),
            "mcc": ("text", False),
            "hour": ("hour", False),
            "channel": ("enum", False),
        }
        fields = {("transaction",): ("object", True)}
        fields.update({("transaction", name): kind for name, kind in kinds.items()})
        return {"transaction": transaction}, fields
    if use_case == "feed":
        good = {"user_id": int(row.user_id), "k": 10, "context": {}, "as_of": AS_OF}
        return good, {
            ("user_id",): ("id", True),
            ("k",): ("k", False),
            ("context",): ("context", False),
            ("as_of",): ("time", False),
        }
    good = {"query": int(row.query_id), "k": 5, "as_of": AS_OF}
    return good, {("query",): ("id", True), ("k",): ("k", False), ("as_of",): ("time", False)}


def _send(client: httpx.Client, url: str, case: Hostile) -> tuple[int, float, httpx.Response]:
    started = time.perf_counter()
    response = client.post(url, content=case.content, headers=case.headers)
    return response.status_code, (time.perf_counter() - started) * 1000, response


# search parses its bodies with feed's funnel code: in the slow tier only
@pytest.mark.parametrize(
    "use_case", ["fraud", "feed", pytest.param("search", marks=pytest.mark.slow)]
)
def test_endpoint_refuses_hostile_bodies_quickly_and_keeps_serving(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, use_case: str
) -> None:
    home = materialized_home(tmp_path_factory, use_case)
    good, fields = _good_body(home, use_case)
    cases = corpus(good, fields, seed=18)
    assert len(cases) >= 500
    log = tmp_path / "requests.sqlite"
    with bento_server(home, use_case, log) as url, httpx.Client(timeout=30) as client:
        endpoint = f"{url}/{ENDPOINTS[use_case]}"
        before = client.post(endpoint, json=good)
        assert before.status_code == 200, before.text
        statuses: Counter[int] = Counter()
        latencies, wrong = [], []
        for case in cases:
            status, elapsed_ms, response = _send(client, endpoint, case)
            statuses[status] += 1
            latencies.append(elapsed_ms)
            answer = response.json() if status in REFUSED else None
            if status not in REFUSED or not answer.get("field") or not answer.get("error"):
                wrong.append(f"{case.name}: {status} {response.text[:200]}")
        after = client.post(endpoint, json=good)
        health = client.post(f"{url}/health", json={}).json()
    p50, p99 = np.percentile(latencies, [50, 99])
    figures = (
        f"{use_case}: {len(cases)} hostile bodies, statuses {dict(sorted(statuses.items()))},"
        f" 4xx latency p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max(latencies):.1f} ms"
    )
    print(figures)
    assert not wrong, f"{len(wrong)} not refused as documented:\n" + "\n".join(wrong[:20])
    assert p99 <= P99_LIMIT_MS and max(latencies) <= MAX_LIMIT_MS, figures
    assert after.status_code == 200 and after.json() == before.json()
    assert health["counters"]["requests"] == 2  # nothing hostile was served
    logged = read_request_log(log)
    assert len(logged) == 2
