"""Post-processing of a funnel's candidates: business rules, diversity and the final order.

Applied in the service and in the offline funnel evaluation alike, so what is measured offline is
what is served: items the user already saw are dropped, at most ``max_per_category`` items of one
category make the final ``k`` (a greedy cap that keeps the given order otherwise), and
:func:`select_and_order` makes the final list from the retrieval order and the ranker's scores.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Sequence

import numpy as np


def filter_seen(items: Sequence[Hashable], seen: Iterable[Hashable]) -> list[Hashable]:
    """``items`` without those in ``seen``, order kept."""
    excluded = set(seen)
    return [item for item in items if item not in excluded]


def cap_per_category(
    ranked: Sequence[Hashable],
    categories: Sequence[Hashable | None],
    k: int,
    max_per_category: int | None,
) -> list[Hashable]:
    """The first ``k`` of ``ranked`` (best first) with at most ``max_per_category`` per category.

    Items without a category are never capped. When the cap leaves fewer than ``k`` items, the
    list is shorter rather than padded with capped ones: the rule is a business promise.
    """
    if max_per_category is None:
        return list(ranked[:k])
    taken: Counter = Counter()
    out = []
    for item, category in zip(ranked, categories, strict=True):
        if category is not None and taken[category] >= max_per_category:
            continue
        taken[category] += category is not None
        out.append(item)
        if len(out) == k:
            break
    return out


def select_and_order(
    pool: Sequence[Hashable],
    categories: Sequence[Hashable | None],
    scores: Sequence[float] | np.ndarray,
    k: int,
    max_per_category: int | None,
) -> list[Hashable]:
    """The final list of a two-stage funnel: retrieval picks the items, the ranker orders them.

    ``pool`` is in retrieval order (the nearest items first, seen ones already dropped) with the
    item's category and ranking score alongside. The first ``k`` of that order within the category
    cap are shown, best ``scores`` first (ties keep the retrieval order).

    Why the retrieval order picks and the score only orders: the ranker is trained on logged
    slates (items a policy had already chosen) from user-level and item-level features, with no
    user x item signal; asked to pick ``k`` of hundreds of candidates it picks by item-level
    expected value and loses the personalisation retrieval found. On the feed it then falls
    behind the popular list at every pool size, while retrieval's own top ``k`` beats it (see
    ``assets.funnel.evaluate``). Ordering a chosen slate is what the ranker learned and is gated on.
    """
    positions = cap_per_category(range(len(pool)), categories, k, max_per_category)
    return [pool[i] for i in order_by_score(positions, [scores[i] for i in positions])]


def order_by_score(
    picked: Sequence[Hashable], scores: Sequence[float] | np.ndarray
) -> list[Hashable]:
    """The second step of :func:`select_and_order`: ``picked`` (the capped first ``k``, in
    retrieval order) best ``scores`` first, ties in retrieval order.

    Apart so that the service can score only what was picked: the pick depends on the retrieval
    order and the categories alone, so the ranker's features are read for ``k`` candidates, not
    for the whole pool (500 on the feed).
    """
    order = sorted(range(len(picked)), key=lambda i: -float(scores[i]))  # stable
    return [picked[i] for i in order]
