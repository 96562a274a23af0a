"""Sampled negatives: existing items only, popularity as of the day before, seeded, never the
positive, and each positive's draws its own (the same whatever rows come with it)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from assets.training.negatives import (
    SAMPLED,
    NegativePool,
    draw_negatives,
    impression_counts,
    negative_pool,
)

DAY = pd.Timestamp("2025-01-01")


def _world(seed: int = 0):
    rng = np.random.default_rng(seed)
    n_items = 200
    catalog = pd.DataFrame(
        {
            "item_id": np.arange(n_items),
            # items 150.. appear on day 5: they must not be drawn before
            "created_at": [DAY - pd.Timedelta("1D")] * 150 + [DAY + pd.Timedelta("5D")] * 50,
        }
    )
    weights = 1.0 / (np.arange(150) + 1.0)  # a Zipf-like popularity over the first 150 items
    n = 60_000
    shown = pd.DataFrame(
        {
            "item_id": rng.choice(150, size=n, p=weights / weights.sum()),
            "event_time": DAY + pd.to_timedelta(rng.integers(0, 10 * 86400, n), "s"),
        }
    )
    positives = shown.sample(2_000, random_state=seed).assign(
        user_id=lambda f: np.arange(len(f)), clicked=1
    )
    return catalog, shown, positives


IDENTITY = ["user_id", "item_id", "event_time"]


def _pool(catalog, shown, strategy: str, seed: int = 7, ratio: int = 4) -> NegativePool:
    return negative_pool(
        key="item_id",
        time="event_time",
        labels=["clicked"],
        catalog=catalog,
        appeared="created_at",
        shown=impression_counts(shown, "item_id", "event_time"),
        strategy=strategy,
        ratio=ratio,
        seed=seed,
    )


def _sample(strategy: str, seed: int = 7, ratio: int = 4):
    catalog, shown, positives = _world()
    negatives = draw_negatives(positives, _pool(catalog, shown, strategy, seed, ratio), IDENTITY)
    return positives, negatives, shown, catalog


def test_negatives_exist_before_their_day_and_never_repeat_the_positive() -> None:
    for strategy in ("random", "popularity"):
        positives, negatives, _, catalog = _sample(strategy)
        appeared = catalog.set_index("item_id").created_at
        assert (appeared[negatives.item_id].to_numpy() < negatives.event_time.dt.floor("D")).all()
        pairs = negatives.merge(positives, on="user_id", suffixes=("", "_pos"))
        assert (pairs.item_id != pairs.item_id_pos).all()
        assert negatives[SAMPLED].all() and (negatives.clicked == 0).all()
        # ratio per positive, minus the rare double collision with the positive itself
        assert 0.99 * 4 * len(positives) <= len(negatives) <= 4 * len(positives)


def test_seeded_and_reproducible() -> None:
    _, first, _, _ = _sample("popularity", seed=1)
    _, again, _, _ = _sample("popularity", seed=1)
    _, other, _, _ = _sample("popularity", seed=2)
    pd.testing.assert_frame_equal(first, again)
    assert not first.item_id.equals(other.item_id)


def test_popularity_follows_past_impressions_and_random_does_not() -> None:
    _, popular, shown, _ = _sample("popularity")
    _, uniform, _, _ = _sample("random")
    impressions = shown.item_id.value_counts().reindex(range(150), fill_value=0)
    drawn_popular = popular.item_id.value_counts().reindex(range(150), fill_value=0)
    drawn_uniform = uniform.item_id.value_counts().reindex(range(150), fill_value=0)
    assert spearmanr(impressions, drawn_popular).statistic > 0.8
    assert abs(spearmanr(impressions, drawn_uniform).statistic) < 0.3
    # the top item is ~17% of impressions: popularity sampling draws it far more than 1/150
    assert drawn_popular[0] / drawn_popular.sum() > 0.1 > drawn_uniform[0] / drawn_uniform.sum()


def test_a_positive_draws_the_same_negatives_whatever_rows_come_with_it() -> None:
    """Shards, a shuffled log or only the first days' positives: each keeps its own negatives."""
    catalog, shown, positives = _world()
    pool = _pool(catalog, shown, "popularity")
    whole = draw_negatives(positives, pool, IDENTITY)
    assert (whole.user_id.diff().fillna(0) != 0).sum() == whole.user_id.nunique() - 1, (
        "a positive's draws come together, positives in their order"
    )
    halves = positives.user_id % 2 == 0
    parts = [draw_negatives(positives[half], pool, IDENTITY) for half in (halves, ~halves)]
    shuffled = draw_negatives(positives.sample(frac=1.0, random_state=5), pool, IDENTITY)
    first_days = positives[positives.event_time < DAY + pd.Timedelta("4D")]
    window = draw_negatives(first_days, pool, IDENTITY)

    def by_positive(frame: pd.DataFrame) -> pd.Series:
        return frame.groupby("user_id").item_id.agg(tuple).sort_index()

    expected = by_positive(whole)
    pd.testing.assert_series_equal(by_positive(pd.concat(parts)), expected)
    pd.testing.assert_series_equal(by_positive(shuffled), expected)
    pd.testing.assert_series_equal(by_positive(window), expected[by_positive(window).index])
    # the identity's dtype does not matter: a Parquet round trip may widen or narrow integers
    narrow = positives.astype({"user_id": "int32", "item_id": "Int64"})
    narrowed = draw_negatives(narrow, pool, IDENTITY)
    assert by_positive(narrowed).map(lambda items: tuple(map(int, items))).equals(expected)


def test_identical_positives_draw_their_own_negatives() -> None:
    """A repeated positive (same keys, same instant) is a second draw, not a copy of the first;
    the first occurrence keeps the negatives it has alone."""
    catalog, shown, positives = _world()
    pool = _pool(catalog, shown, "random", ratio=8)
    one = positives.iloc[:1]
    alone = draw_negatives(one, pool, IDENTITY)
    twice = draw_negatives(pd.concat([one, one], ignore_index=True), pool, IDENTITY)
    assert len(twice) == 2 * len(alone) == 16
    assert twice.item_id[:8].tolist() == alone.item_id.tolist()
    assert twice.item_id[8:].tolist() != alone.item_id.tolist()


def test_no_positives_or_no_catalog_yet_draws_nothing() -> None:
    catalog, shown, positives = _world()
    pool = _pool(catalog, shown, "popularity")
    assert draw_negatives(positives.iloc[:0], pool, IDENTITY).empty
    early = positives.assign(event_time=DAY - pd.Timedelta("3D"))  # before any item existed
    drawn = draw_negatives(early, pool, IDENTITY)
    assert drawn.empty and list(drawn.columns) == [*positives.columns, SAMPLED]
