"""Sampled negatives for implicit feedback: items a user was not shown acting on.

For each positive, ``ratio`` items of the sampled entity are drawn from the catalog as it stood
before the positive's day — never an item that did not exist yet, and (``popularity``) in
proportion to its impressions before that day, the harder and less popularity-biased choice for
retrieval; ``random`` draws uniformly. A draw equal to the positive's own item is drawn again once
and dropped if it repeats. Draws are vectorised per day, seeded, and reproducible.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SAMPLED = "sampled_negative"


def _catalog(
    catalog: pd.DataFrame, key: str, appeared: str | None
) -> tuple[np.ndarray, np.ndarray]:
    """Catalog keys and when each appeared (the epoch when unknown)."""
    keys = catalog[key].to_numpy()
    if appeared and appeared in catalog:
        times = catalog[appeared].fillna(pd.Timestamp(0)).to_numpy("datetime64[ns]")
    else:
        times = np.full(len(keys), np.datetime64(0, "ns"))
    return keys, times


def sample_negatives(
    positives: pd.DataFrame,
    *,
    key: str,
    time: str,
    labels: list[str],
    catalog: pd.DataFrame,
    appeared: str | None,
    impressions: pd.DataFrame,
    strategy: str,
    ratio: int,
    seed: int,
) -> pd.DataFrame:
    """Negative rows: each positive repeated ``ratio`` times with ``key`` replaced, labels 0."""
    rng = np.random.default_rng(seed)
    keys, appeared_at = _catalog(catalog, key, appeared)
    index = pd.Index(keys)
    shown = index.get_indexer(impressions[key])
    shown_day = impressions[time].dt.floor("D").to_numpy()
    counts = np.zeros(len(keys), dtype=np.float64)
    days = positives[time].dt.floor("D")
    parts = []
    for day in np.sort(days.unique()):
        before = shown_day < day
        np.add.at(counts, shown[before & (shown >= 0)], 1.0)
        shown, shown_day = shown[~before], shown_day[~before]
        eligible = appeared_at < day
        weights = counts * eligible if strategy == "popularity" else eligible.astype(np.float64)
        if weights.sum() == 0:  # the first day has no history: uniform over what exists
            weights = eligible.astype(np.float64)
        if weights.sum() == 0:
            continue
        rows = positives[(days == day).to_numpy()]
        repeated = rows.loc[rows.index.repeat(ratio)]
        drawn = keys[rng.choice(len(keys), size=len(repeated), p=weights / weights.sum())]
        clash = drawn == repeated[key].to_numpy()
        if clash.any():
            drawn[clash] = keys[
                rng.choice(len(keys), size=int(clash.sum()), p=weights / weights.sum())
            ]
        keep = drawn != repeated[key].to_numpy()
        parts.append(repeated.assign(**{key: drawn})[keep])
    if not parts:
        return positives.iloc[:0].assign(**{SAMPLED: pd.Series(dtype=bool)})
    negatives = pd.concat(parts, ignore_index=True)
    negatives[key] = negatives[key].astype(positives[key].dtype)
    for label in labels:
        negatives[label] = np.zeros(len(negatives), dtype=positives[label].dtype)
    negatives[SAMPLED] = True
    return negatives
