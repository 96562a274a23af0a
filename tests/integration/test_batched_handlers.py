"""A batch answers each request exactly as serving it alone would, and a bad one fails alone.

The services answer concurrent requests in batches (``serving.batching``), so the batched paths
of the handlers (one feature read, one query-tower call, one FAISS search, one ranker call) must
give every request the answer it would get on its own: same items, scores, arm, versions and
misses. Requests carry a fixed time, since features such as time-since-last depend on it.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from runtime.postprocess import select_and_order
from serving.funnel import FunnelHandler
from serving.handler import Handler
from serving.requests import RequestError
from serving.service import build_handler
from tests.integration.served import materialized_home

pytestmark = pytest.mark.integration
AS_OF = "2026-11-20T12:00:00Z"


def _events(home: Path, use_case: str) -> pd.DataFrame:
    files = sorted((home / "tables" / use_case / "raw_events").rglob("*.parquet"))
    return pd.read_parquet(files[-1])


def _handler(home: Path, use_case: str) -> Handler:
    return build_handler(home / "serving" / use_case / "bundle", log=False)


def _same_alone_and_together(handler: Handler, bodies: list[dict], bad: dict) -> None:
    alone = [handler.handle(body) for body in bodies]
    together = handler.handle_many([*bodies[:3], bad, *bodies[3:]])
    assert isinstance(together[3], RequestError)
    assert together[:3] + together[4:] == alone


def test_fraud_batches_score_like_single_requests(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    home = materialized_home(tmp_path_factory, "fraud")
    events = _events(home, "fraud").tail(12)
    bodies = [
        {
            "transaction": {
                "card_id": int(row.card_id),
                "merchant_id": int(row.merchant_id),
                "amount": float(row.amount),
                "event_time": AS_OF,
            }
        }
        for row in events.itertuples()
    ]
    bodies.append({"transaction": {"card_id": 10**9, "merchant_id": 10**9, "amount": 5.0}})
    bodies[-1]["transaction"]["event_time"] = AS_OF  # unknown card and merchant: all misses
    bad = {"transaction": {"card_id": "a card", "merchant_id": 1, "amount": 5.0}}
    handler = _handler(home, "fraud")
    _same_alone_and_together(handler, bodies, bad)
    assert handler.handle(bodies[-1])["feature_misses"] > 0


@pytest.mark.parametrize(
    ("use_case", "unit", "column"),
    [
        ("feed", "user_id", "user_id"),
        # the same funnel code as feed's: in the slow tier only
        pytest.param("search", "query", "query_id", marks=pytest.mark.slow),
    ],
)
def test_funnel_batches_rank_like_single_requests(
    tmp_path_factory: pytest.TempPathFactory, use_case: str, unit: str, column: str
) -> None:
    home = materialized_home(tmp_path_factory, use_case)
    units = _events(home, use_case)[column].drop_duplicates().head(10).tolist()
    bodies = [{unit: int(u), "k": 7, "as_of": AS_OF} for u in units]
    bodies.append({unit: 10**9, "k": 5, "as_of": AS_OF})  # cold: the popular items
    handler = _handler(home, use_case)
    _same_alone_and_together(handler, bodies, {unit: "not an id", "as_of": AS_OF})
    answers = handler.handle_many(bodies)
    assert answers[-1]["cold_start"] is True
    assert any(not a["cold_start"] for a in answers[:-1])
    assert {a["arm"] for a in answers} <= {arm.name for arm in handler.arms}


@pytest.mark.parametrize(("use_case", "unit", "column"), [("feed", "user_id", "user_id")])
def test_funnel_scores_only_what_it_shows_and_answers_as_the_whole_pool_would(
    tmp_path_factory: pytest.TempPathFactory, use_case: str, unit: str, column: str
) -> None:
    """The service scores the ``k`` picked candidates only; the answer (items, order, scores)
    is the one scoring the whole pool and applying ``select_and_order`` gives. The log holds the
    unit's features once and each shown item's own, which together are the row it was scored on."""
    home = materialized_home(tmp_path_factory, use_case)
    units = _events(home, use_case)[column].drop_duplicates().head(8).tolist()
    handler = _handler(home, use_case)
    assert isinstance(handler, FunnelHandler) and handler.category is not None
    requests = [handler.parse({unit: int(u), "k": 7, "as_of": AS_OF}) for u in units]
    served = handler.serve_parsed(requests)
    answers, logged = [a for a, _ in served], [extras["features"] for _, extras in served]
    cap = handler.spec.serving.max_per_category
    checked = 0
    for request, answer, features in zip(requests, answers, logged, strict=True):
        pool = pd.DataFrame({handler.user_key: request.unit, handler.item_key: request.pool})
        as_of = pd.Series([pd.Timestamp(AS_OF)] * len(pool))
        frame, _ = handler.features.read(handler.ranking, pool, as_of)
        ranker = handler.bundle.model(handler.ranking, request.arm.versions[handler.ranking])
        scores = ranker.predict(frame)
        categories = frame[handler.category].tolist()
        expected = select_and_order(request.pool, categories, scores, request.k, cap)
        assert [item[handler.item_key] for item in answer["items"]] == expected
        score_of = dict(zip(request.pool, scores.tolist(), strict=True))
        assert [item["score"] for item in answer["items"]] == [score_of[i] for i in expected]
        rows = frame.set_index(handler.item_key, drop=False)
        assert len(features["items"]) == len(expected)
        for item, row in zip(expected, features["items"], strict=True):
            assert not set(row) & (set(features["user"]) - {handler.item_key})
            whole = {**features["user"], **row}
            assert set(whole) == set(frame.columns)
            for column in frame.columns:
                value, want = whole[column], rows.at[item, column]
                assert (
                    value == want
                    or (pd.isna(want) and pd.isna(value))
                    or (isinstance(value, list) and list(want) == value)
                ), column
        checked += len(request.pool) > request.k
    assert checked  # some pools were larger than what they showed
