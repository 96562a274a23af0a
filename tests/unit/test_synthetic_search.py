"""Synthetic search world: determinism, schema, graded relevance, biased clicks, text signal.

Sizes are the defaults over 4 days (8,000 requests x 10 results); each asserted gap is several
standard errors wide, so the tests check properties of the generator rather than of one seed.
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from assets.raw.synthetic.search import SearchWorld
from configs.schema.source import SearchGeneratorParams
from tests.conftest import assert_plain_strings

START = date(2024, 7, 1)
DAYS = 4
SEED = 5
EVENT_DTYPES = {
    "request_id": "int64",
    "query_id": "int64",
    "doc_id": "int64",
    "position": "int64",
    "event_time": "datetime64[ns]",
    "relevance": "int8",
    "clicked": "int8",
}


def _days(n: int = DAYS) -> list[date]:
    return [START + timedelta(days=i) for i in range(n)]


@pytest.fixture(scope="module")
def world() -> SearchWorld:
    return SearchWorld(SearchGeneratorParams(), SEED, START, DAYS)


@pytest.fixture(scope="module")
def events(world: SearchWorld) -> pd.DataFrame:
    frames = [world.events_with_hidden(day).assign(day=i) for i, day in enumerate(_days())]
    return pd.concat(frames, ignore_index=True)


def _token_overlap(world: SearchWorld, frame: pd.DataFrame) -> np.ndarray:
    """Share of each row's query tokens that appear in the document title (public text only)."""
    queries = world.entity_table("queries").query_text.str.split().to_list()
    titles = [set(t) for t in world.entity_table("documents").title.str.split()]
    return np.array(
        [
            sum(token in titles[d] for token in queries[q]) / len(queries[q])
            for q, d in zip(frame.query_id, frame.doc_id, strict=True)
        ]
    )


def _bm25(world: SearchWorld, frame: pd.DataFrame, k1: float = 1.2, b: float = 0.75) -> np.ndarray:
    """Plain BM25 of each row's title for its query text."""
    queries = world.entity_table("queries").query_text.str.split().to_list()
    titles = world.entity_table("documents").title.str.split().to_list()
    doc_freq = Counter(token for title in titles for token in set(title))
    n_docs, avg_len = len(titles), np.mean([len(t) for t in titles])
    idf = {t: math.log(1 + (n_docs - f + 0.5) / (f + 0.5)) for t, f in doc_freq.items()}
    scores = []
    for q, d in zip(frame.query_id, frame.doc_id, strict=True):
        title, norm = titles[d], k1 * (1 - b + b * len(titles[d]) / avg_len)
        tf = Counter(title)
        scores.append(
            sum(idf.get(t, 0.0) * tf[t] * (k1 + 1) / (tf[t] + norm) for t in queries[q] if t in tf)
        )
    return np.array(scores)


def _mean_ndcg(frame: pd.DataFrame, score: np.ndarray, k: int = 10) -> float:
    """Mean NDCG@k over requests when each request's rows are ranked by ``score``."""
    gain = 2.0 ** frame.relevance.to_numpy() - 1
    request = frame.request_id.to_numpy()

    def dcg(order: np.ndarray) -> np.ndarray:
        ranked_request, ranked_gain = request[order], gain[order]
        rank = np.arange(len(order)) - np.searchsorted(ranked_request, ranked_request)
        discounted = np.where(rank < k, ranked_gain / np.log2(rank + 2), 0.0)
        return pd.Series(discounted).groupby(ranked_request).sum().to_numpy()

    ideal = dcg(np.lexsort((-gain, request)))
    actual = dcg(np.lexsort((-score, request)))
    keep = ideal > 0
    return float(np.mean(actual[keep] / ideal[keep]))


def test_columns_dtypes_and_entities(world: SearchWorld, events: pd.DataFrame) -> None:
    assert world.events_for_day(START).dtypes.astype(str).to_dict() == EVENT_DTYPES
    queries, documents = world.entity_table("queries"), world.entity_table("documents")
    assert_plain_strings(world.events_for_day(START), queries, documents)
    assert queries.dtypes.astype(str).to_dict() == {
        "query_id": "int64",
        "query_text": "object",
        "query_length": "int64",
    }
    assert documents.dtypes.astype(str).to_dict() == {
        "doc_id": "int64",
        "title": "object",
        "category": "object",
        "authority": "float64",
        "length": "int64",
        "created_at": "datetime64[ns]",
    }
    assert (queries.query_text.str.split().str.len() == queries.query_length).all()
    assert queries.query_text.str.fullmatch(r"((t\d\d|g)_w\d\d ?)+").all()
    assert set(documents.category) == {f"cat_{g}" for g in range(5)}
    assert documents.authority.between(0, 1).all() and (documents.length > 0).all()
    created = documents.created_at.to_numpy()[events.doc_id]
    assert (created < events.event_time.to_numpy()).all()


def test_result_lists_are_well_formed(events: pd.DataFrame) -> None:
    for i, day in events.groupby("day"):
        start = pd.Timestamp(START + timedelta(days=int(i)))
        assert day.event_time.between(start, start + pd.Timedelta(days=1), inclusive="left").all()
        assert day.event_time.is_monotonic_increasing
    per_request = events.groupby("request_id")
    assert (per_request.size() == 10).all()
    assert (per_request.position.agg(lambda p: list(p) == list(range(len(p))))).all()
    assert not events.duplicated(["request_id", "doc_id"]).any()
    assert (per_request.query_id.nunique() == 1).all()


def test_relevance_is_graded_and_spread(events: pd.DataFrame) -> None:
    share = events.relevance.value_counts(normalize=True).sort_index()
    assert list(share.index) == [0, 1, 2, 3, 4]
    assert (share > 0.03).all() and share[0] < 0.6
    # the production ranker puts more relevant results higher, but not perfectly
    by_position = events.groupby("position").relevance.mean()
    assert by_position.iloc[0] > by_position.iloc[9] + 1.0
    assert (events[events.position == 0].relevance == 0).mean() > 0.03


def test_click_rate_increases_with_relevance(events: pd.DataFrame) -> None:
    ctr = events.groupby("relevance").clicked.mean()
    assert ctr.is_monotonic_increasing and ctr[4] > 5 * ctr[1]


def test_clicks_decrease_with_position_at_fixed_relevance(events: pd.DataFrame) -> None:
    for grade in (2, 3, 4):
        ctr = events[events.relevance == grade].groupby("position").clicked.mean()
        assert ctr[0] > ctr[2] > ctr[5]
        assert ctr[0] / ctr[5] == pytest.approx(6.0, rel=0.4)  # (1 + 5) ** position_bias


def test_query_title_overlap_carries_relevance(world: SearchWorld, events: pd.DataFrame) -> None:
    sample = events[events.day == 0]
    overlap = pd.Series(_token_overlap(world, sample), index=sample.index)
    assert overlap[sample.relevance >= 3].mean() > overlap[sample.relevance == 0].mean() + 0.3
    assert np.allclose(overlap, sample.hidden_overlap)


def test_bm25_beats_random_ranking(world: SearchWorld, events: pd.DataFrame) -> None:
    sample = events[events.day == 0]
    rng = np.random.default_rng(0)
    bm25 = _mean_ndcg(sample, _bm25(world, sample))
    random = _mean_ndcg(sample, rng.random(len(sample)))
    assert bm25 > random + 0.1
