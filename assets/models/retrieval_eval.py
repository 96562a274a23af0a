"""Offline evaluation of a retrieval stage: full ranking over the whole catalog.

The protocol (the same for every model, so numbers are comparable):

* every user with at least one *future* interaction (a positive in the test split) is scored
  against the **whole** catalog with an exact dot product (numpy, no ANN), so a score reflects
  the model and not an index's approximation;
* items the user already interacted with in the training split are removed from the ranking
  (recommending them again is not retrieval) and are dropped from the relevant set too, since
  they can no longer be retrieved; users left with no relevant item are skipped;
* recall@k, hit_rate@k and ndcg@k are computed per user, then averaged over users, so heavy
  users do not dominate.

Users the model has no vector for (cold users) are scored with ``fallback_scores`` when given
(a popularity ranking, the rule the serving path uses) and counted as misses otherwise, so a
model is never rewarded for silently skipping hard users.

The YAML's ``evaluation`` can change what is removed (``seen``: every training interaction, or
nothing, instead of the training positives) and which users count (``warm_users`` with
``units``: warm users only, or all with the warm and cold means also reported apart); see
:func:`assets.models.evaluation_rows.retrieval_options`.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from assets.models.evaluation_rows import PartTotals

_CHUNK = 2048  # users scored at once: bounds the (users x catalog) score matrix in memory


def _groups(frame: pd.DataFrame, user_key: str, item_key: str) -> dict[Hashable, set]:
    """Each user's set of items."""
    if frame.empty:
        return {}
    grouped = frame.groupby(user_key, sort=False)[item_key].agg(lambda s: set(s.tolist()))
    return grouped.to_dict()


def _user_matrix(
    user_vectors: Mapping[Hashable, np.ndarray] | np.ndarray,
    users: Sequence[Hashable],
    sorted_users: Sequence[Hashable],
) -> tuple[np.ndarray, np.ndarray]:
    """Vectors of ``users`` and a mask of who has one.

    An array is read as one row per test user in sorted order (``sorted_users``).
    """
    if isinstance(user_vectors, np.ndarray):
        lookup = dict(zip(sorted_users, user_vectors, strict=True))
    else:
        lookup = dict(user_vectors)
    dim = next((len(v) for v in lookup.values()), 1)
    matrix = np.zeros((len(users), dim), dtype=np.float32)
    has = np.zeros(len(users), dtype=bool)
    for row, user in enumerate(users):
        vector = lookup.get(user)
        if vector is not None:
            matrix[row] = vector
            has[row] = True
    return matrix, has


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the ``k`` best scores per row, best first (ties: lower index)."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -part_scores), axis=1)
    return np.take_along_axis(part, order, axis=1)


def _metrics(ranked: list, relevant: set, ks: Iterable[int]) -> dict[str, float]:
    ks = list(ks)
    depth = max(ks)
    hits = np.zeros(depth)
    hits[: len(ranked)] = [item in relevant for item in ranked[:depth]]
    discounts = 1.0 / np.log2(np.arange(2, depth + 2))
    out = {}
    for k in ks:
        found = hits[:k].sum()
        ideal = discounts[: min(k, len(relevant))].sum()
        out[f"recall@{k}"] = found / len(relevant)
        out[f"hit_rate@{k}"] = float(found > 0)
        out[f"ndcg@{k}"] = float((hits[:k] * discounts[:k]).sum() / ideal)
    return out


def evaluate_retrieval(
    user_vectors: Mapping[Hashable, np.ndarray] | np.ndarray,
    item_ids: np.ndarray,
    item_vectors: np.ndarray,
    train_positives: pd.DataFrame,
    test_positives: pd.DataFrame,
    user_key: str,
    item_key: str,
    ks: Sequence[int] = (10, 50),
    fallback_scores: np.ndarray | None = None,
    *,
    seen: pd.DataFrame | None = None,
    warm_users: Collection[Hashable] | None = None,
    units: str = "all",
) -> dict[str, float]:
    """Mean recall/hit-rate/ndcg@k of exact dot-product retrieval over the whole catalog.

    ``user_vectors`` is ``{user: vector}`` or an array with one row per test user in sorted
    order. ``fallback_scores`` (one score per catalog item) ranks users without a vector;
    without it they count as misses. Returns the metrics plus ``users`` (evaluated) and
    ``fallback_users`` (how many of them were ranked by the fallback). ``seen`` (default: the
    training positives) is what is removed per user; with ``warm_users``, ``units="warm"``
    skips the other users and ``"all"`` adds ``warm/`` and ``cold/`` means.
    """
    item_ids = np.asarray(item_ids)
    position = pd.Index(item_ids)
    history = _groups(train_positives if seen is None else seen, user_key, item_key)
    future = _groups(test_positives, user_key, item_key)
    sorted_users = sorted(future)
    users, relevant = [], []
    for user in sorted_users:
        wanted = future[user] - history.get(user, set())
        if wanted and (units == "all" or warm_users is None or user in warm_users):
            users.append(user)
            relevant.append(wanted)
    matrix, has = _user_matrix(user_vectors, users, sorted_users)
    vectors = np.asarray(item_vectors, dtype=np.float32)
    fallback = None if fallback_scores is None else np.asarray(fallback_scores, dtype=np.float32)
    depth = max(ks)
    totals = PartTotals(warm_users if units == "all" else None)
    fallback_users = 0
    for start in range(0, len(users), _CHUNK):
        stop = min(start + _CHUNK, len(users))
        scores = matrix[start:stop] @ vectors.T
        cold = ~has[start:stop]
        if fallback is not None:
            scores[cold] = fallback
            fallback_users += int(cold.sum())
        else:
            scores[cold] = -np.inf
        for row, user in enumerate(users[start:stop]):
            seen = position.get_indexer(list(history.get(user, ())))
            scores[row, seen[seen >= 0]] = -np.inf
        top = _top_k(scores, depth)
        for row in range(stop - start):
            if cold[row] and fallback is None:
                ranked: list = []
            else:
                ranked = [item_ids[j] for j in top[row] if np.isfinite(scores[row, j])]
            totals.add(users[start + row], _metrics(ranked, relevant[start + row], ks))
    result = totals.means()
    result["users"] = float(len(users))
    result["fallback_users"] = float(fallback_users)
    return result


def popularity_scores(
    train_positives: pd.DataFrame, item_ids: np.ndarray, item_key: str
) -> np.ndarray:
    """Clicks per catalog item in the training positives (zero for never-clicked items)."""
    counts = train_positives[item_key].value_counts()
    return counts.reindex(np.asarray(item_ids), fill_value=0).to_numpy(dtype=np.float32)


def popularity_baseline(
    item_ids: np.ndarray,
    train_positives: pd.DataFrame,
    test_positives: pd.DataFrame,
    user_key: str,
    item_key: str,
    ks: Sequence[int] = (10, 50),
    **options: Any,
) -> dict[str, float]:
    """The most-clicked training items for everyone, scored by :func:`evaluate_retrieval`.

    A model has to beat this to be worth serving: it is also the cold-user fallback.
    ``options`` (``seen``, ``warm_users``, ``units``) go to :func:`evaluate_retrieval`.
    """
    item_ids = np.asarray(item_ids)
    return evaluate_retrieval(
        {},
        item_ids,
        np.zeros((len(item_ids), 1), dtype=np.float32),
        train_positives,
        test_positives,
        user_key,
        item_key,
        ks,
        fallback_scores=popularity_scores(train_positives, item_ids, item_key),
        **options,
    )
