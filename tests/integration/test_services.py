"""The BentoML services for real: a built Bento served by ``bentoml serve`` on 127.0.0.1.

Each use case is materialized once (small world) through its ``bento`` asset; the test serves
the Bento by tag, sends good and bad requests over HTTP and checks the answers, the 422s, the
cold-start path, the experiment arms and the request log.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pandas as pd
import pytest

from assets.serving.bento_serve import BENTO_WORKER_STARTED, READY_TIMEOUT_S, started_workers
from runtime.bundle import load_bundle
from runtime.request_log import read_request_log
from serving.service import WORKERS_ENV
from tests.integration.served import bento_server, materialized_home

pytestmark = pytest.mark.integration


def _post(url: str, path: str, body: object | str) -> httpx.Response:
    if isinstance(body, str):
        return httpx.post(
            f"{url}/{path}", content=body, headers={"content-type": "application/json"}, timeout=30
        )
    return httpx.post(f"{url}/{path}", json=body, timeout=30)


def _error(response: httpx.Response) -> str:
    body = response.json()
    return str(body[0]["error"] if isinstance(body, list) else body["error"])


def _events(home: Path, use_case: str) -> pd.DataFrame:
    files = sorted((home / "tables" / use_case / "raw_events").rglob("*.parquet"))
    return pd.read_parquet(files[-1])


def test_fraud_service_scores_explains_and_rejects_bad_requests(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    home = materialized_home(tmp_path_factory, "fraud")
    events = _events(home, "fraud").tail(20)
    log = tmp_path / "requests.sqlite"
    with bento_server(home, "fraud", log) as url:
        health = _post(url, "health", {}).json()
        assert health["arms"][0]["versions"]["scorer"] == "1"
        unexplained = 0
        for i, row in enumerate(events.itertuples()):
            explain = i % 4 == 0  # fraud.yaml's reasons: flagged, and some requests ask
            answer = _post(
                url,
                "score",
                {
                    "transaction": {
                        "card_id": int(row.card_id),
                        "merchant_id": int(row.merchant_id),
                        "amount": float(row.amount),
                        "event_time": row.event_time.isoformat(),
                    },
                    "explain": explain,
                },
            )
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert 0.0 <= body["probability"] <= 1.0
            assert body["decision"] in {"approve", "review", "decline"}
            reasons = 5 if explain or body["decision"] != "approve" else 0
            unexplained += reasons == 0
            assert len(body["top_features"]) == reasons and body["feature_misses"] == 0
            assert body["model_versions"] == {"scorer": "1"}
        assert unexplained > 0  # approvals that did not ask answered without the SHAP pass
        # an unknown card and merchant: defaults, counted, still an answer
        unknown = _post(url, "score", {"transaction": {"card_id": 10**9, "merchant_id": 10**9}})
        # one miss per feature view of the card and of the merchant (aggregates, attributes)
        assert unknown.status_code == 200 and unknown.json()["feature_misses"] == 4
        bad = {
            "missing": ({"transaction": {"merchant_id": 1}}, "transaction.card_id"),
            "type": ({"transaction": {"card_id": "x", "merchant_id": 1}}, "transaction.card_id"),
            "shape": ({"transaction": 5}, "transaction"),
            "time": (
                {"transaction": {"card_id": 1, "merchant_id": 1, "event_time": "soon"}},
                "event_time",
            ),
            "explain": ({"transaction": {"card_id": 1, "merchant_id": 1}, "explain": 1}, "explain"),
            "malformed": ('{"transaction": {"card_id": 1', "body"),
            "not an object": ("[1, 2]", "body"),
        }
        for name, (body, field) in bad.items():
            response = _post(url, "score", body)
            assert response.status_code == 422, (name, response.text)
            assert field in _error(response), (name, response.text)
        counters = _post(url, "health", {}).json()["counters"]
        assert counters["requests"] == 21 and counters["feature_misses"] == 4
    logged = read_request_log(log)
    assert len(logged) == 21 and set(logged["arm"]) == {"champion"}
    first = logged.iloc[0]
    assert first["model_versions"] == {"scorer": "1"}
    assert "card_velocity__events_count_7d" in first["features"]
    assert 0.0 <= first["scores"]["probability"] <= 1.0


def test_feed_service_recommends_with_arms_cold_start_and_caps(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    home = materialized_home(tmp_path_factory, "feed")
    bundle = load_bundle(home / "serving" / "feed" / "bundle")
    assert [a.name for a in bundle.manifest.arm_objects()] == ["control", "treatment"]
    cap = bundle.spec.serving.max_per_category
    users = _events(home, "feed")["user_id"].drop_duplicates().head(30).tolist()
    log = tmp_path / "requests.sqlite"
    with bento_server(home, "feed", log) as url:
        arms = {}
        for user in users:
            answer = _post(url, "recommend", {"user_id": int(user), "k": 10})
            assert answer.status_code == 200, answer.text
            body = answer.json()
            items = [i["item_id"] for i in body["items"]]
            assert 0 < len(items) <= 10 and len(set(items)) == len(items)
            scores = [i["score"] for i in body["items"]]
            assert scores == sorted(scores, reverse=True)
            arms[user] = body["arm"]
            assert set(body["model_versions"]) == {"retrieval", "next_item", "ranking"}
        assert set(arms.values()) <= {"control", "treatment"}
        again = _post(url, "recommend", {"user_id": int(users[0])}).json()
        assert again["arm"] == arms[users[0]]  # sticky
        assert len(again["items"]) <= bundle.spec.serving.k
        cold = _post(url, "recommend", {"user_id": 10**9, "k": 5}).json()
        assert cold["cold_start"] is True and len(cold["items"]) == 5
        # concurrent requests are answered in batches, each exactly as it is answered alone
        bodies = [{"user_id": int(u), "k": 10, "as_of": "2026-11-20T12:00:00Z"} for u in users]
        alone = [_post(url, "recommend", body).json() for body in bodies]
        with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
            together = list(pool.map(lambda body: _post(url, "recommend", body).json(), bodies))
        assert together == alone
        batching = _post(url, "health", {}).json()["batching"]
        assert batching["requests"] == 3 * len(users) + 2
        assert batching["batches"] < batching["requests"]  # some went together
        for body, field in (
            ({"k": 5}, "user_id"),
            ({"user_id": "abc"}, "user_id"),
            ({"user_id": 1, "k": 0}, "k"),
            ({"user_id": 1, "context": [1]}, "context"),
            ('{"user_id": ', "body"),
        ):
            response = _post(url, "recommend", body)
            assert response.status_code == 422, response.text
            assert field in _error(response)
    logged = read_request_log(log)
    assert len(logged) == 3 * len(users) + 2
    assert set(logged["arm"]) <= {"control", "treatment"}
    categories = [
        [row.get("item_popularity_attributes__category") for row in f["items"]]
        for f in logged["features"]
    ]
    for cats in categories:
        assert max(pd.Series(cats).value_counts(), default=0) <= cap


def test_search_service_ranks_documents_for_known_and_unknown_queries(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    home = materialized_home(tmp_path_factory, "search")
    queries = _events(home, "search")["query_id"].drop_duplicates().head(20).tolist()
    log = tmp_path / "requests.sqlite"
    with bento_server(home, "search", log, settings={WORKERS_ENV: "2"}) as url:
        # the setting reached the built Bento: two workers, each with its bundle
        output = log.with_suffix(".out")
        assert started_workers(output, BENTO_WORKER_STARTED, 2, READY_TIMEOUT_S) == 2
        for query in queries:
            answer = _post(url, "search", {"query": int(query), "k": 5})
            assert answer.status_code == 200, answer.text
            body = answer.json()
            docs = [d["doc_id"] for d in body["items"]]
            assert 0 < len(docs) <= 5 and len(set(docs)) == len(docs)
            assert set(body["model_versions"]) == {"retrieval", "ranking"}
        cold = _post(url, "search", {"query": 10**9}).json()
        assert cold["cold_start"] is True and len(cold["items"]) == 10
        response = _post(url, "search", {"query": "cheap flights"})
        assert response.status_code == 422 and "query" in _error(response)
