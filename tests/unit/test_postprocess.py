"""Post-processing rules: seen items dropped, category caps keep ranking order."""

from __future__ import annotations

from runtime.postprocess import cap_per_category, filter_seen


def test_filter_seen_keeps_order() -> None:
    assert filter_seen([5, 3, 9, 1], {3, 1}) == [5, 9]


def test_category_cap_is_greedy_in_rank_order() -> None:
    ranked = ["a", "b", "c", "d", "e", "f"]
    categories = ["x", "x", "x", "y", None, "y"]
    assert cap_per_category(ranked, categories, 4, 2) == ["a", "b", "d", "e"]
    assert cap_per_category(ranked, categories, 10, 1) == ["a", "d", "e"]
    assert cap_per_category(ranked, categories, 3, None) == ["a", "b", "c"]
