"""Sampled negatives for implicit feedback: items a user was not shown acting on.

For each positive, ``ratio`` items of the sampled entity are drawn from the catalog as it stood
before the positive's day — never an item that did not exist yet, and (``popularity``) in
proportion to its impressions before that day, the harder and less popularity-biased choice for
retrieval; ``random`` draws uniformly. A draw equal to the positive's own item is drawn again once
and dropped if it repeats.

Why every draw is a function of its own positive: the uniform number behind draw ``j`` of a
positive is a hash of the positive's identity (its join keys and time, and which occurrence of
that identity it is), ``j``, the attempt and the seed — a counter-based stream, not one seeded
stream over the whole log. So a positive gets the same negatives whatever other positives come
with it: in one pass or in any shard of the positives (:func:`negatives_shard`, here or as Ray
tasks; :mod:`assets.training.sharded_labels` runs them), and the sharded set equals the
one-pass set. What a draw needs from the whole log
— the catalog, when each item appeared and the impressions per day — is gathered once into a
:class:`NegativePool` that travels with every shard.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from runtime.shards import stable_keys

SAMPLED = "sampled_negative"
DRAW = "__negatives_draw"  # a draw's place among its shard's, to put a positive's draws in order
_UNIT = 2.0**-53  # the top 53 bits of a 64-bit hash as a uniform number in [0, 1)


@dataclass(frozen=True)
class NegativePool:
    """What every draw needs from the whole log, gathered once (small: the catalog's size plus
    one count per item and day with impressions)."""

    key: str  # the sampled entity's key column
    time: str  # the events' timestamp column
    labels: tuple[str, ...]
    keys: np.ndarray  # the catalog's keys
    appeared_at: np.ndarray  # datetime64[ns] per catalog key (the epoch when unknown)
    shown_day: np.ndarray  # datetime64[ns] day of each (day, item) with impressions, sorted
    shown_item: np.ndarray  # its catalog position
    shown_count: np.ndarray  # float64 impressions of that item that day
    strategy: str
    ratio: int
    seed: int

    def day_weights(self, days: np.ndarray) -> Iterator[tuple[np.datetime64, np.ndarray]]:
        """Each of ``days`` (sorted) with its draw weights over the catalog: impressions before
        that day (or uniform) over the items that existed; days with none left out."""
        counts = np.zeros(len(self.keys), dtype=np.float64)
        added = 0
        for day in days:
            upto = int(np.searchsorted(self.shown_day, day, side="left"))
            np.add.at(counts, self.shown_item[added:upto], self.shown_count[added:upto])
            added = max(added, upto)
            eligible = self.appeared_at < day
            if self.strategy == "popularity":
                weights = counts * eligible
            else:
                weights = eligible.astype(np.float64)
            if weights.sum() == 0:  # the first day has no history: uniform over what exists
                weights = eligible.astype(np.float64)
            if weights.sum() > 0:
                yield day, weights


def impression_counts(impressions: pd.DataFrame, key: str, time: str) -> pd.Series:
    """Impressions (rows of ``key`` and ``time``) per day and key: what a pool needs of them,
    summed over the batches of a log read in pieces."""
    day = impressions[time].dt.floor("D").rename("day")
    return impressions.groupby([day, impressions[key].rename("key")], sort=False).size()


def negative_pool(
    *,
    key: str,
    time: str,
    labels: Sequence[str],
    catalog: pd.DataFrame,
    appeared: str | None,
    shown: pd.Series,
    strategy: str,
    ratio: int,
    seed: int,
) -> NegativePool:
    """The pool of ``catalog``'s ``key`` values, with ``shown`` (:func:`impression_counts`)
    per item and day; impressions of keys outside the catalog are ignored."""
    keys = catalog[key].to_numpy()
    if appeared and appeared in catalog:
        appeared_at = catalog[appeared].fillna(pd.Timestamp(0)).to_numpy("datetime64[ns]")
    else:
        appeared_at = np.full(len(keys), np.datetime64(0, "ns"))
    item = pd.Index(keys).get_indexer(shown.index.get_level_values("key"))
    day = shown.index.get_level_values("day").to_numpy("datetime64[ns]")
    known = item >= 0
    counted = (
        pd.Series(shown.to_numpy(np.float64)[known])
        .groupby([day[known], item[known]], sort=True)
        .sum()
    )
    return NegativePool(
        key=key,
        time=time,
        labels=tuple(labels),
        keys=keys,
        appeared_at=appeared_at,
        shown_day=counted.index.get_level_values(0).to_numpy("datetime64[ns]"),
        shown_item=counted.index.get_level_values(1).to_numpy(np.int64),
        shown_count=counted.to_numpy(np.float64),
        strategy=strategy,
        ratio=ratio,
        seed=seed,
    )


def _identities(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """A hash of each row's values (as :func:`runtime.shards.stable_keys` reads them, so the
    dtype a frame or a Parquet file gives does not matter) and which occurrence of that hash
    the row is: identical positives get their own draws, in the rows' order."""
    hashed = pd.util.hash_pandas_object(stable_keys(rows), index=False).to_numpy()
    occurrence = pd.Series(hashed).groupby(hashed, sort=False).cumcount().to_numpy(np.uint64)
    return hashed, occurrence


def _uniforms(
    hashed: np.ndarray, occurrence: np.ndarray, draw: np.ndarray, attempt: int, seed: int
) -> np.ndarray:
    """Uniform numbers in [0, 1), one per (positive, draw, attempt, seed)."""
    n = len(hashed)
    mixed = pd.util.hash_pandas_object(
        pd.DataFrame(
            {
                "row": hashed,
                "occurrence": occurrence,
                "draw": draw.astype(np.uint64),
                "attempt": np.full(n, attempt, dtype=np.uint64),
                "seed": np.full(n, seed % 2**64, dtype=np.uint64),
            }
        ),
        index=False,
    ).to_numpy()
    return (mixed >> np.uint64(11)).astype(np.float64) * _UNIT


def _pick(weights: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """Catalog positions drawn in proportion to ``weights``: inverse of the cumulative weights
    (an item of weight 0 is never picked)."""
    cumulative = np.cumsum(weights)
    picked = np.searchsorted(cumulative, uniforms * cumulative[-1], side="right")
    return np.minimum(picked, len(weights) - 1)


def draw_negatives(
    positives: pd.DataFrame, pool: NegativePool, identity: Sequence[str]
) -> pd.DataFrame:
    """Negative rows, each positive's in draw order, positives in their order: the positive
    repeated with the pool's key replaced, labels 0, ``SAMPLED`` true.

    ``identity`` (the positive's join keys and time) names what makes a positive itself; its
    draws depend on those values, the pool and the seed only.
    """
    hashed, occurrence = _identities(positives[list(identity)])
    day_of = positives[pool.time].dt.floor("D").to_numpy("datetime64[ns]")
    own = positives[pool.key].to_numpy()
    rows, drawn = [], []
    for day, weights in pool.day_weights(np.unique(day_of)):
        at = np.flatnonzero(day_of == day)
        rep = np.repeat(at, pool.ratio)
        draw = np.tile(np.arange(pool.ratio), len(at))
        keys = pool.keys[
            _pick(weights, _uniforms(hashed[rep], occurrence[rep], draw, 0, pool.seed))
        ]
        clash = keys == own[rep]
        if clash.any():
            again = _uniforms(hashed[rep][clash], occurrence[rep][clash], draw[clash], 1, pool.seed)
            keys[clash] = pool.keys[_pick(weights, again)]
        keep = keys != own[rep]
        rows.append(rep[keep])
        drawn.append(keys[keep])
    if not rows:
        return positives.iloc[:0].assign(**{SAMPLED: pd.Series(dtype=bool)})
    taken = np.concatenate(rows)
    order = np.argsort(taken, kind="stable")  # by positive; a positive's draws stay in order
    negatives = positives.iloc[taken[order]].reset_index(drop=True)
    negatives[pool.key] = pd.Series(
        np.concatenate(drawn)[order], dtype=positives[pool.key].dtype
    ).array
    for label in pool.labels:
        negatives[label] = np.zeros(len(negatives), dtype=positives[label].dtype)
    negatives[SAMPLED] = True
    return negatives


def negatives_shard(
    source: str, target: str, *, pool: NegativePool, identity: tuple[str, ...], order: str
) -> int:
    """One shard's positives from ``source``, their negatives to ``target`` with ``DRAW``, the
    draw's place in the shard's output.

    The positives are first put in the log's order (``order``: their place in it): identical
    positives number their occurrences in that order, and a shard cut from per-unit files
    holds them unit file by unit file. Module-level, its settings bound by
    ``functools.partial``, so Ray ships it by reference (the pool, the catalog's size, travels
    with it)."""
    positives = pd.read_parquet(source).sort_values(order, kind="stable", ignore_index=True)
    drawn = draw_negatives(positives, pool, identity)
    drawn[DRAW] = np.arange(len(drawn), dtype=np.int64)
    drawn.to_parquet(target, index=False)
    return len(drawn)
