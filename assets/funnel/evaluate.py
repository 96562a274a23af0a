"""The feed/search funnel, offline: two-tower + FAISS candidates, ranker, post-processing.

For each test request the user's query-tower embedding retrieves ``serving.candidates`` items
from the whole catalog through the FAISS index; items the user clicked in training are dropped;
the candidates get the ranking model's features as of the request (the same point-in-time join
as training) and its scores; the category cap and ``serving.k`` make the final list. Recall,
hit rate and NDCG of that list against the request's clicks are reported beside the most-popular
list under the same rules, and so is the candidate stage's own recall — the ceiling the ranker
works under.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from assets.training.build import SPLIT, join_features
from assets.training.label_rows import AS_OF
from assets.training.model_views import label_columns
from configs.schema.usecase import UseCaseSpec
from runtime.funnel_roles import category_column, funnel_models, retrieval_keys
from runtime.postprocess import cap_per_category, filter_seen

MAX_REQUESTS = 2000  # a seeded sample keeps the evaluation to seconds at any data size


@dataclass
class FunnelResult:
    metrics: dict[str, float]
    baseline: dict[str, float]
    requests: pd.DataFrame  # one row per evaluated request: final list, relevant items, hits


def _list_metrics(final: list, relevant: set, k: int) -> tuple[float, float, float]:
    hits = [1.0 if item in relevant else 0.0 for item in final[:k]]
    dcg = sum(h / np.log2(i + 2) for i, h in enumerate(hits))
    ideal = sum(1.0 / np.log2(i + 2) for i in range(min(len(relevant), k)))
    return sum(hits) / len(relevant), float(any(hits)), dcg / ideal if ideal else 0.0


def _summary(rows: list[tuple[float, float, float]], k: int) -> dict[str, float]:
    values = np.array(rows) if rows else np.zeros((0, 3))
    names = (f"recall@{k}", f"hit_rate@{k}", f"ndcg@{k}")
    return {
        n: float(values[:, i].mean()) if len(values) else float("nan") for i, n in enumerate(names)
    }


def evaluate_funnel(
    spec: UseCaseSpec,
    retriever,
    search: Callable[[np.ndarray, int], np.ndarray],
    rank: Callable[[pd.DataFrame], np.ndarray],
    ranking_set: pd.DataFrame,
    retrieval_set: pd.DataFrame,
    table_paths: dict[str, str],
    seed: int = 0,
) -> FunnelResult:
    """End-to-end offline evaluation of the funnel on the test requests of ``ranking_set``."""
    retrieval_model, ranking_model = funnel_models(spec)
    user_key, item_key, _ = retrieval_keys(spec, retrieval_model)
    group, serving = spec.events.group, spec.serving
    label = next(iter(label_columns(spec, ranking_model).values()))
    click = next(iter(label_columns(spec, retrieval_model).values()))
    test = ranking_set[ranking_set[SPLIT] == "test"]
    relevant = test[test[label] > 0].groupby(group)[item_key].agg(set)
    requests = test[test[group].isin(relevant.index)].drop_duplicates(group)
    if len(requests) > MAX_REQUESTS:
        requests = requests.sample(MAX_REQUESTS, random_state=seed)
    requests = requests.reset_index(drop=True)
    train = retrieval_set[(retrieval_set[SPLIT] == "train") & (retrieval_set[click] > 0)]
    seen = train.groupby(user_key)[item_key].agg(set)
    popular = train[item_key].value_counts().index.tolist()

    warm = retriever.is_warm(requests)
    vectors = retriever.user_embeddings(requests)
    found = search(vectors, serving.candidates)
    candidate_lists = []
    for row, ids, is_warm in zip(requests.itertuples(), found, warm, strict=True):
        pool = list(ids) if is_warm else popular[: serving.candidates]
        candidate_lists.append(filter_seen(pool, seen.get(getattr(row, user_key), set())))
    candidates = pd.DataFrame(
        {
            group: np.repeat(requests[group].to_numpy(), [len(c) for c in candidate_lists]),
            user_key: np.repeat(requests[user_key].to_numpy(), [len(c) for c in candidate_lists]),
            AS_OF: np.repeat(requests[AS_OF].to_numpy(), [len(c) for c in candidate_lists]),
            item_key: np.concatenate([np.asarray(c) for c in candidate_lists]),
        }
    )
    candidates[item_key] = candidates[item_key].astype(test[item_key].dtype)
    joined, _ = join_features(spec, ranking_model, candidates, table_paths)
    joined["score"] = rank(joined)
    category = category_column(joined.columns)

    k = serving.k
    model_rows, popular_rows, candidate_recall, finals = [], [], [], []
    by_request = dict(tuple(joined.groupby(group, sort=False)))
    for row, pool in zip(requests.itertuples(), candidate_lists, strict=True):
        request_id = getattr(row, group)
        wanted = relevant[request_id]
        ranked = by_request[request_id].sort_values("score", ascending=False, kind="stable")
        cats = ranked[category].tolist() if category else [None] * len(ranked)
        final = cap_per_category(ranked[item_key].tolist(), cats, k, serving.max_per_category)
        finals.append(final)
        model_rows.append(_list_metrics(final, wanted, k))
        top = filter_seen(popular, seen.get(getattr(row, user_key), set()))[:k]
        popular_rows.append(_list_metrics(top, wanted, k))
        candidate_recall.append(len(wanted & set(pool)) / len(wanted))
    metrics = _summary(model_rows, k)
    metrics[f"candidate_recall@{serving.candidates}"] = float(np.mean(candidate_recall))
    metrics["requests"] = float(len(requests))
    table = requests[[group, user_key, AS_OF]].assign(
        final=finals,
        relevant=[sorted(relevant[r]) for r in requests[group]],
        hits=[
            int(m[0] * len(relevant[r])) for m, r in zip(model_rows, requests[group], strict=True)
        ],
    )
    return FunnelResult(metrics, _summary(popular_rows, k), table)
