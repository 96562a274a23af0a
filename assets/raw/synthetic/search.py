"""Synthetic web search: queries, documents, ranked result impressions, graded relevance, clicks.

Generative story
----------------
Hidden state (never emitted): every query and document has a topic (``n_topics``; topics are
grouped four at a time into the public ``category`` ``cat_{topic // 4}``), every document a quality
``N(0, 1)``, and every query a popularity (Zipf with exponent 1.05 over a random ranking). Each
topic owns ``vocabulary_per_topic`` tokens ``t{topic}_w{word}`` used with Zipf frequencies; 30
generic tokens ``g_w{word}`` are shared by all topics.

Observed entities: ``queries`` (text of 1-6 distinct tokens: 80% from the query's topic, 10% from
another topic, 10% generic) and ``documents`` (title of up to 12 distinct tokens: 75% own topic,
10% other, 15% generic; ``authority = sigmoid(0.9 quality + N(0, 0.5))``; length; created_at with
20% created during the generated days - only documents created before a request are retrieved).

Relevance of a (query, document) pair is fixed for the world:
``s = 2.0 topic_match + 2.5 overlap + 0.6 quality + 0.6 pair_noise`` where ``topic_match`` is 1
for the same topic, 0.35 for the same category and 0 otherwise, ``overlap`` is the share of query
tokens present in the title and ``pair_noise`` is a logistic draw hashed from (seed, query, doc).
``relevance`` (0-4) cuts ``s`` at thresholds set at build time from a pilot of retrieved pairs so
that about 40/25/17/11/7% of impressions get grades 0..4.

Each day has ``requests_per_day`` requests at diurnal times, the query drawn by popularity.
Retrieval over-samples candidates - 65% same-topic documents (weighted by ``exp(0.7 quality)``),
15% same-category, 20% random - keeps ``results_per_request`` distinct ones and orders them by a
noisy production ranker ``s + N(0, 1.5)``, so position correlates with relevance imperfectly.
Clicks follow a position-based model: ``examined ~ (1 / (1 + position)) ** position_bias`` and
``clicked = examined AND Bernoulli(0.03 + 0.97 (2^relevance - 1) / 16)``. Learnable signal:
query/title token overlap (BM25 beats random), category match, authority; clicks are a
position-biased proxy of relevance.
"""

from __future__ import annotations

from datetime import date
from typing import ClassVar

import numpy as np

from assets.raw.synthetic.base import (
    DAYTIME_PROFILE,
    DayContext,
    PrefixSampler,
    SyntheticWorld,
    arrival_times,
    as_datetime64,
    examination_probability,
    first_unique_per_row,
    sample_times_in_day,
    sigmoid,
)
from configs.schema.source import SearchGeneratorParams

TOPICS_PER_CATEGORY = 4
_GENERIC_TOKENS = 30
_MAX_QUERY_TOKENS = 6
_MAX_TITLE_TOKENS = 12
_SOURCE_PROBS = np.array([0.65, 0.15, 0.20])  # same topic, same category, random
_GRADE_QUANTILES = np.array([0.40, 0.65, 0.82, 0.93])
_PILOT_REQUESTS = 3000
_CLICK_FLOOR = 0.03
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _hash_uniform(seed: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Uniform (0, 1) from a splitmix64 hash of (seed, a, b): the same pair always gets the same."""
    x = (np.asarray(a, np.uint64) * np.uint64(0x9E3779B97F4A7C15)) ^ (
        np.asarray(b, np.uint64) + np.uint64((seed * 0xBF58476D1CE4E5B9 + 1) & int(_MASK64))
    )
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return ((x >> np.uint64(11)).astype(np.float64) + 0.5) / 2.0**53


class SearchWorld(SyntheticWorld):
    """Search world: ``queries`` and ``documents`` entity tables and daily result impressions."""

    entity_tables: ClassVar[tuple[str, ...]] = ("queries", "documents")
    event_columns: ClassVar[tuple[str, ...]] = (
        "request_id",
        "query_id",
        "doc_id",
        "position",
        "event_time",
        "relevance",
        "clicked",
    )

    def __init__(
        self, params: SearchGeneratorParams, seed: int, start_date: date, days: int
    ) -> None:
        if not isinstance(params, SearchGeneratorParams):
            raise TypeError(f"SearchWorld needs SearchGeneratorParams, got {type(params).__name__}")
        super().__init__(params, seed, start_date, days)

    def _build(self) -> None:
        p = self.params
        rng = self.world_rng(1)
        vocab = p.vocabulary_per_topic
        self._word_cumulative = np.cumsum(1.0 / np.arange(1, vocab + 1))
        self._word_cumulative /= self._word_cumulative[-1]
        topic_popularity = rng.dirichlet(np.ones(p.n_topics))
        self.query_topic = rng.choice(p.n_topics, size=p.n_queries, p=topic_popularity)
        doc_topic_p = 0.5 * topic_popularity + 0.5 / p.n_topics
        self.doc_topic = rng.choice(p.n_topics, size=p.n_documents, p=doc_topic_p)
        self.query_tokens = self._texts(rng, self.query_topic, 1.3, 1, _MAX_QUERY_TOKENS, 0.8, 0.1)
        self.doc_tokens = self._texts(rng, self.doc_topic, 4.0, 3, _MAX_TITLE_TOKENS, 0.75, 0.1)
        self.doc_quality = rng.normal(size=p.n_documents)
        authority = sigmoid(0.9 * self.doc_quality + rng.normal(0.0, 0.5, p.n_documents))
        created = arrival_times(rng, p.n_documents, self.start_ns, self.days, 0.2, 3 * 365)
        query_rank = rng.permutation(p.n_queries)
        self._queries = PrefixSampler(1.0 / (1.0 + query_rank) ** 1.05)
        n_categories = (p.n_topics - 1) // TOPICS_PER_CATEGORY + 1
        retrieval_weight = np.exp(0.7 * self.doc_quality)
        self._topic_docs = PrefixSampler(retrieval_weight, created, self.doc_topic, p.n_topics)
        self._category_docs = PrefixSampler(
            retrieval_weight, created, self.doc_topic // TOPICS_PER_CATEGORY, n_categories
        )
        self._random_docs = PrefixSampler(np.ones(p.n_documents), created)
        self._register_tables(authority, created, rng)
        self._grade_cuts = np.zeros(4)
        pilot_times = np.sort(rng.integers(self.start_ns, self.end_ns, size=_PILOT_REQUESTS))
        pilot = self._retrieve(self.world_rng(2), pilot_times)
        self._grade_cuts = np.quantile(pilot["score"], _GRADE_QUANTILES)

    def _texts(
        self,
        rng: np.random.Generator,
        topic: np.ndarray,
        mean_extra: float,
        minimum: int,
        maximum: int,
        own_share: float,
        other_share: float,
    ) -> np.ndarray:
        """Token-id matrix (rows padded with -1) of distinct tokens, mostly from each row's topic."""
        p = self.params
        n, vocab = len(topic), p.vocabulary_per_topic
        length = np.minimum(minimum + rng.poisson(mean_extra, size=n), maximum)
        word = np.searchsorted(self._word_cumulative, rng.random((n, maximum)), side="right")
        word = np.minimum(word, vocab - 1)
        other = (topic[:, None] + rng.integers(1, p.n_topics, size=(n, maximum))) % p.n_topics
        source = rng.random((n, maximum))
        token_topic = np.where(source < own_share, topic[:, None], other)
        tokens = token_topic * vocab + word
        generic = p.n_topics * vocab + rng.integers(0, _GENERIC_TOKENS, size=(n, maximum))
        tokens = np.where(source >= own_share + other_share, generic, tokens)
        tokens = np.where(np.arange(maximum) < length[:, None], tokens, -1)
        return first_unique_per_row(tokens, maximum)

    def _token_text(self, tokens: np.ndarray) -> np.ndarray:
        """Space-joined token names per row (names formatted once per distinct token)."""
        p = self.params
        vocab, topic_width = p.vocabulary_per_topic, max(2, len(str(p.n_topics - 1)))
        word_width = max(2, len(str(max(vocab, _GENERIC_TOKENS) - 1)))
        names: dict[int, str] = {}
        for token in np.unique(tokens[tokens >= 0]).tolist():
            topic, word = divmod(token, vocab)
            if topic < p.n_topics:
                names[token] = f"t{topic:0{topic_width}d}_w{word:0{word_width}d}"
            else:
                names[token] = f"g_w{token - p.n_topics * vocab:0{word_width}d}"
        texts = [" ".join(names[t] for t in row if t >= 0) for row in tokens.tolist()]
        return np.array(texts, dtype=object)

    def _register_tables(
        self, authority: np.ndarray, created: np.ndarray, rng: np.random.Generator
    ) -> None:
        """Public ``queries`` and ``documents`` tables (text rendered from token ids)."""
        p = self.params
        n_categories = (p.n_topics - 1) // TOPICS_PER_CATEGORY + 1
        width = len(str(n_categories - 1))
        categories = np.array([f"cat_{g:0{width}d}" for g in range(n_categories)], dtype=object)
        self._set_table(
            "queries",
            {
                "query_id": np.arange(p.n_queries, dtype=np.int64),
                "query_text": self._token_text(self.query_tokens),
                "query_length": (self.query_tokens >= 0).sum(axis=1).astype(np.int64),
            },
        )
        self._set_table(
            "documents",
            {
                "doc_id": np.arange(p.n_documents, dtype=np.int64),
                "title": self._token_text(self.doc_tokens),
                "category": categories[self.doc_topic // TOPICS_PER_CATEGORY],
                "authority": np.round(authority, 4),
                "length": np.maximum(rng.lognormal(np.log(800), 0.7, p.n_documents), 50).astype(
                    np.int64
                ),
                "created_at": as_datetime64(created),
            },
        )

    def relevance_score(self, query: np.ndarray, doc: np.ndarray) -> dict[str, np.ndarray]:
        """Hidden continuous relevance ``s`` of (query, doc) pairs and its components."""
        q_tokens, d_tokens = self.query_tokens[query], self.doc_tokens[doc]
        present = np.zeros(q_tokens.shape, dtype=bool)
        for i in range(q_tokens.shape[1]):
            present[:, i] = (d_tokens == q_tokens[:, i : i + 1]).any(axis=1)
        present &= q_tokens >= 0
        overlap = present.sum(axis=1) / np.maximum((q_tokens >= 0).sum(axis=1), 1)
        q_topic, d_topic = self.query_topic[query], self.doc_topic[doc]
        same_group = q_topic // TOPICS_PER_CATEGORY == d_topic // TOPICS_PER_CATEGORY
        topic_match = np.where(q_topic == d_topic, 1.0, np.where(same_group, 0.35, 0.0))
        u = _hash_uniform(self.seed, query, doc)
        noise = 0.6 * np.log(u / (1.0 - u)) / 1.8  # logistic scaled to unit sd
        score = 2.0 * topic_match + 2.5 * overlap + 0.6 * self.doc_quality[doc] + noise
        return {"score": score, "overlap": overlap, "topic_match": topic_match}

    def _retrieve(self, rng: np.random.Generator, times: np.ndarray) -> dict[str, np.ndarray]:
        """Queries and ranked result lists for request times, flattened to one row per result."""
        n, k = len(times), self.params.results_per_request
        query = self._queries.sample(rng, None, size=n)
        m = 2 * k + 4
        t, q_topic = np.repeat(times, m), np.repeat(self.query_topic[query], m)
        source = rng.choice(3, size=n * m, p=_SOURCE_PROBS)
        cand = self._random_docs.sample(rng, t)
        for src, sampler, group in (
            (0, self._topic_docs, q_topic),
            (1, self._category_docs, q_topic // TOPICS_PER_CATEGORY),
        ):
            idx = np.flatnonzero(source == src)
            picked = sampler.sample(rng, t[idx], group[idx])
            cand[idx] = np.where(picked >= 0, picked, cand[idx])
        results = first_unique_per_row(cand.reshape(n, m), k)
        request, slot = np.nonzero(results >= 0)
        doc = results[request, slot]
        rel = self.relevance_score(query[request], doc)
        ranker = rel["score"] + rng.normal(0.0, 1.5, size=len(doc))
        # Order results within each request by the noisy ranker: sort by (request, -ranker).
        order = np.lexsort((-ranker, request))
        request, doc = request[order], doc[order]
        rel = {key: value[order] for key, value in rel.items()}
        starts = np.searchsorted(request, request, side="left")
        position = (np.arange(len(request)) - starts).astype(np.int64)
        return {
            "request": request,
            "query": query[request],
            "doc": doc,
            "position": position,
            **rel,
        }

    def _simulate_day(self, context: DayContext) -> dict[str, np.ndarray]:
        p = self.params
        times = np.sort(
            sample_times_in_day(
                context.rng(0), p.requests_per_day, context.start_ns, DAYTIME_PROFILE
            )
        )
        rows = self._retrieve(context.rng(1), times)
        relevance = np.searchsorted(self._grade_cuts, rows["score"], side="right").astype(np.int8)
        exam = examination_probability(rows["position"], p.position_bias)
        attract = _CLICK_FLOOR + (1 - _CLICK_FLOOR) * (2.0 ** relevance.astype(float) - 1) / 16
        rng = context.rng(2)
        n = len(exam)
        clicked = (rng.random(n) < exam) & (rng.random(n) < attract)
        return {
            "request_id": context.index * 10**9 + rows["request"].astype(np.int64),
            "query_id": rows["query"].astype(np.int64),
            "doc_id": rows["doc"].astype(np.int64),
            "position": rows["position"],
            "event_time": as_datetime64(times[rows["request"]]),
            "relevance": relevance,
            "clicked": clicked.astype(np.int8),
            "hidden_score": rows["score"],
            "hidden_overlap": rows["overlap"],
            "hidden_topic_match": rows["topic_match"],
            "hidden_examine_prob": exam,
        }
