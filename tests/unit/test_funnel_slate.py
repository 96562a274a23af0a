"""The funnel's final list: retrieval order picks the items within the category cap, the ranker's
score orders them; the offline evaluation and the service share this rule."""

from __future__ import annotations

import pytest

from runtime.postprocess import select_and_order


def test_retrieval_order_picks_and_scores_order() -> None:
    pool = ["a", "b", "c", "d", "e"]  # retrieval order, nearest first
    categories = ["x", "y", "z", "w", "v"]
    scores = [0.1, 0.9, 0.5, 5.0, 9.0]  # "d" and "e" score best but are beyond k in retrieval order
    assert select_and_order(pool, categories, scores, 3, None) == ["b", "c", "a"]


def test_the_cap_skips_in_retrieval_order_before_scores_count() -> None:
    pool = ["a", "b", "c", "d", "e", "f"]
    categories = ["x", "x", "x", "y", None, "y"]
    scores = [0.0, 1.0, 3.0, 2.0, 0.5, 9.0]
    # at most 2 per category: "c" is the third "x" and is skipped, whatever its score
    assert select_and_order(pool, categories, scores, 4, 2) == ["d", "b", "e", "a"]
    # a cap that leaves fewer than k items makes a shorter list, not a padded one
    assert select_and_order(pool, categories, scores, 10, 1) == ["d", "e", "a"]


def test_ties_keep_the_retrieval_order() -> None:
    assert select_and_order([3, 1, 2], [None] * 3, [0.5, 0.5, 0.5], 3, 1) == [3, 1, 2]


@pytest.mark.parametrize("k", [0, 1])
def test_small_k(k: int) -> None:
    assert select_and_order(["a", "b"], ["x", "y"], [0.0, 1.0], k, None) == ["a", "b"][:k]
