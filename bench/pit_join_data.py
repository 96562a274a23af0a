"""The data of ``bench/pit_join.py``: labels and feature rows with planted edge cases.

Kept apart from the engines and the checks because all of them read what it writes, and the
planted cases (exact ties on event time, labels at and 1µs past the TTL boundary, at and 1µs
before an event, ids with no history) are the point of the benchmark: one place defines them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

FEATURES = ("f_float", "f_int")
START = pd.Timestamp("2024-03-01", tz="UTC")
DAY_US = 86_400 * 10**6


def _times(offsets_us: np.ndarray) -> pd.Series:
    """UTC timestamps at microsecond resolution from offsets after ``START``."""
    return pd.Series(START + pd.to_timedelta(offsets_us, unit="us")).astype("datetime64[us, UTC]")


def generate(folder: Path, args: argparse.Namespace) -> dict[str, int]:
    """Write ``labels.parquet`` and ``features.parquet``; return how many of each case."""
    rng = np.random.default_rng(args.seed)
    m, n, ttl_us = args.rows, args.labels, args.ttl_days * DAY_US
    base = m - m // 20  # 5% of rows are tie winners planted before the row they beat
    user = rng.integers(0, args.entities, base)
    event = rng.integers(0, args.days * DAY_US, base)
    created = event + rng.integers(0, int(args.lag_s * 10**6) + 1, base)
    losers = rng.choice(base, m - base, replace=False)
    winner_created = created[losers] + rng.integers(1, 10**6, len(losers))
    picked = rng.choice(losers, min(n // 100, len(losers)), replace=False)
    tie_user, tie_event = user[picked], event[picked]  # before the arrays are interleaved
    order = np.argsort(np.concatenate([np.arange(base), losers - 0.5]), kind="stable")
    user = np.concatenate([user, user[losers]])[order]
    event = np.concatenate([event, event[losers]])[order]
    created = np.concatenate([created, winner_created])[order]
    features = pd.DataFrame(
        {
            "user_id": user,
            "event_timestamp": _times(event),
            "created_timestamp": _times(created),
            "f_float": rng.normal(size=m),
            "f_int": np.arange(m, dtype=np.int64),
        }
    )
    features.to_parquet(folder / "features.parquet", row_group_size=1 << 20)

    # labels: 2% on ids with no history, uniform times after a TTL of warm-up
    label_user = rng.integers(0, int(args.entities * 1.02), n)
    as_of = rng.integers(ttl_us, args.days * DAY_US, n)
    cases = {"at a tie": (tie_user, tie_event)}
    for name, shift in (("at TTL boundary", ttl_us), ("1us past TTL", ttl_us + 1)):
        rows = rng.integers(0, m, n // 100)
        cases[name] = (user[rows], event[rows] + shift)
    for name, shift in (("at event time", 0), ("1us before event", -1)):
        rows = rng.integers(0, m, n // 100)
        cases[name] = (user[rows], event[rows] + shift)
    slots = rng.permutation(n)
    counts, at = {}, 0
    for name, (users, times) in cases.items():
        target = slots[at : at + len(users)]
        label_user[target], as_of[target] = users, times
        counts[name], at = len(users), at + len(users)
    labels = pd.DataFrame(
        {
            "row_id": np.arange(n, dtype=np.int64),
            "user_id": label_user,
            "event_timestamp": _times(as_of),
        }
    )
    labels.to_parquet(folder / "labels.parquet")
    return counts
