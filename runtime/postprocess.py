"""Post-processing of a ranked candidate list: business rules and diversity, no Dagster.

Applied after ranking, in the service and in the offline funnel evaluation alike, so what is
measured offline is what is served: items the user already interacted with are dropped, and at
most ``max_per_category`` items of one category make the final ``k`` (a greedy cap that keeps
the ranking order otherwise).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Sequence


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
