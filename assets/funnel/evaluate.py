"""The feed/search funnel, offline: retrieval + FAISS candidates, category cap, ranker order.

For each test request every candidate source (two-tower, sequence: each user vector searched in
its FAISS index) retrieves ``serving.candidates`` items from the whole catalog, and the sources'
lists are merged by rank as the service merges them (a user cold for every source gets the most
popular items); the
items in the user's recent-history list features as of the request are dropped -- the rule the
service applies (``runtime.funnel_roles.history_items``), not "what was clicked in training";
the first ``serving.k`` of the retrieval order within the category cap make the list, which the
ranking model orders (``runtime.postprocess.select_and_order``, the service's rule too). The
candidates get the ranking model's features as of the request through the same point-in-time
join as training.

Recall, hit rate and NDCG of the list against the request's clicks are reported beside the
most-popular list under the same rules (history dropped, category cap) and beside the same list
in retrieval order, which tells whether the ranker's order helps; so is the candidate stage's
recall, the ceiling retrieval works under.

Why retrieval picks the items and the ranker only orders them (measured on the shipped feed,
seeds 7, 8 and 11, recall@20 of test clicks under the served rules): letting the ranker pick
20 of the 500 candidates gave 0.104 / 0.069 / 0.078 against the popular list's 0.139 / 0.116 /
0.127, and no pool size (40 to 500) or training-set variant made it win on every seed; the
retrieval order's top 20 gave 0.165 / 0.151 / 0.165. The ranker has only user-level and
item-level features, so it orders every user's candidates by item-level expected revenue (its
top 20 cost twice the pool's median price); the personalisation is in retrieval.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np
import pandas as pd

from assets.training.build import SPLIT, join_features
from assets.training.label_rows import AS_OF
from assets.training.model_views import label_columns
from configs.schema.usecase import UseCaseSpec
from runtime.funnel_roles import (
    category_column,
    funnel_models,
    history_items,
    merge_candidates,
    retrieval_keys,
)
from runtime.postprocess import cap_per_category, filter_seen, select_and_order

MAX_REQUESTS = 2000  # a seeded sample keeps the evaluation to seconds at any data size
SCORE = "__score"


@dataclass
class FunnelResult:
    metrics: dict[str, float]
    baseline: dict[str, float]  # the popular list under the same rules
    requests: pd.DataFrame  # one row per evaluated request: final list, relevant items, hits
    retrieval_order: dict[str, float]  # the funnel's items in retrieval order (ranker unused)


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


def _histories(requests: pd.DataFrame, columns: list[str]) -> list[set]:
    """Per request, the ids in the user's list features as of the request: what the service
    drops as already seen (it reads the same features online)."""
    return history_items(requests[columns])


def _candidate_rows(
    requests: pd.DataFrame, pools: list[list], keys: tuple[str, str, str], dtype
) -> pd.DataFrame:
    group, user_key, item_key = keys
    sizes = [len(pool) for pool in pools]
    items = np.concatenate([np.asarray(pool) for pool in pools]) if pools else np.array([])
    return pd.DataFrame(
        {
            group: np.repeat(requests[group].to_numpy(), sizes),
            user_key: np.repeat(requests[user_key].to_numpy(), sizes),
            AS_OF: np.repeat(requests[AS_OF].to_numpy(), sizes),
            item_key: items.astype(dtype),
        }
    )


def _categories(frame: pd.DataFrame, item_key: str) -> dict:
    """Item -> category from a frame with the ranking features (the attribute is static)."""
    column = category_column(frame.columns)
    if column is None:
        return {}
    known = frame[[item_key, column]].dropna().drop_duplicates(item_key, keep="last")
    return dict(zip(known[item_key], known[column], strict=True))


# a candidate source: the retrieval model (two-tower or sequence) and its index's search
Retrieval = tuple[Any, Callable[[np.ndarray, int], np.ndarray]]


def _found(
    requests: pd.DataFrame, retrievers: dict[str, Retrieval], size: int
) -> dict[str, list[list | None]]:
    """Per source, each request's nearest items (None where the unit is cold for it), as the
    service searches them (:meth:`serving.funnel.FunnelHandler._search`)."""
    found: dict[str, list[list | None]] = {}
    for name, (model, search) in retrievers.items():
        rows = requests.copy()
        for column in model.user_columns:
            if column not in rows.columns:
                rows[column] = None  # a feature the set lacks reads as missing, as online
        warm = np.asarray(model.is_warm(rows), dtype=bool)
        hits: list[list | None] = [None] * len(requests)
        if warm.any():
            ids = search(model.user_embeddings(rows[warm].reset_index(drop=True)), size)
            for i, row in zip(np.flatnonzero(warm), ids, strict=True):
                hits[i] = [item for item in row.tolist() if item != -1]
        found[name] = hits
    return found


def _pools(
    found: dict[str, list[list | None]], seen: list[set], popular: list, size: int
) -> list[list]:
    """Each request's candidate pool, the service's rule: every source's list less the seen
    items, merged by rank; the popular items when no source has the unit."""
    pools = []
    for i, history in enumerate(seen):
        lists = {n: filter_seen(hits[i], history) for n, hits in found.items() if hits[i]}
        if lists:
            pools.append(merge_candidates(lists, size)[0])
        else:
            pools.append(filter_seen(popular[:size], history))
    return pools


def evaluate_funnel(
    spec: UseCaseSpec,
    retrievers: dict[str, Retrieval],
    rank: Callable[[pd.DataFrame], np.ndarray],
    ranking_set: pd.DataFrame,
    retrieval_set: pd.DataFrame,
    table_paths: dict[str, str],
    seed: int = 0,
) -> FunnelResult:
    """End-to-end offline evaluation of the funnel on the test requests of ``ranking_set``;
    ``retrievers`` are the candidate sources by model name, the primary one first."""
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
    popular = train[item_key].value_counts().index.tolist()  # the cold-user fallback's order
    user_columns = dict.fromkeys(c for model, _ in retrievers.values() for c in model.user_columns)
    seen = _histories(requests, [c for c in user_columns if c in requests.columns])
    pools = _pools(
        _found(requests, retrievers, serving.candidates), seen, popular, serving.candidates
    )
    keys = (group, user_key, item_key)
    candidates, _ = join_features(
        spec,
        ranking_model,
        _candidate_rows(requests, pools, keys, test[item_key].dtype),
        table_paths,
    )
    category_of = _categories(ranking_set, item_key) | _categories(candidates, item_key)
    cap, k = serving.max_per_category, serving.k
    # only the items the cap and k let through are shown, so only they need the ranker's score
    shown = [cap_per_category(pool, [category_of.get(i) for i in pool], k, cap) for pool in pools]
    owners = np.repeat(requests[group].to_numpy(), [len(items) for items in shown])
    chosen = set(zip(owners.tolist(), chain.from_iterable(shown), strict=True))
    in_list = [pair in chosen for pair in zip(candidates[group], candidates[item_key], strict=True)]
    scored = candidates[in_list].copy()
    scored[SCORE] = rank(scored) if len(scored) else np.zeros(0)
    score_of = dict(
        zip(zip(scored[group], scored[item_key], strict=True), scored[SCORE], strict=True)
    )

    model_rows, popular_rows, retrieval_rows, candidate_recall, finals = [], [], [], [], []
    for request_id, pool, items, history in zip(requests[group], pools, shown, seen, strict=True):
        wanted = relevant[request_id]
        scores = [score_of[(request_id, item)] for item in items]
        final = select_and_order(items, [category_of.get(i) for i in items], scores, k, cap)
        finals.append(final)
        model_rows.append(_list_metrics(final, wanted, k))
        retrieval_rows.append(_list_metrics(items, wanted, k))
        unseen = filter_seen(popular, history)
        top = cap_per_category(unseen, [category_of.get(i) for i in unseen], k, cap)
        popular_rows.append(_list_metrics(top, wanted, k))
        candidate_recall.append(len(wanted & set(pool)) / len(wanted))
    metrics = _summary(model_rows, k)
    metrics[f"candidate_recall@{serving.candidates}"] = float(np.mean(candidate_recall))
    metrics["requests"] = float(len(requests))
    table = requests[[group, user_key, AS_OF]].assign(
        final=finals,
        relevant=[sorted(relevant[r]) for r in requests[group]],
        hits=[
            int(round(m[0] * len(relevant[r])))
            for m, r in zip(model_rows, requests[group], strict=True)
        ],
    )
    return FunnelResult(metrics, _summary(popular_rows, k), table, _summary(retrieval_rows, k))
