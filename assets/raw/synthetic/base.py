"""Shared machinery of the seeded synthetic worlds.

A world is built once from ``(params, seed, start_date, days)``: entities and their hidden latent
state are drawn from a world-level random stream. Each day's events are then drawn from a stream
seeded by ``(seed, day ordinal, k)`` only, so a day is identical whether it is generated alone, after
other days, or in any order; that is what lets daily partitions be (re)materialised independently.

The helpers here (availability-aware weighted sampling, diurnal timestamps, arrival times,
position-bias examination, de-duplicated slates) are the pieces every world needs, kept in one
place so the three generative stories differ only in what they model, not in plumbing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, ClassVar

import numpy as np
import pandas as pd

NS_PER_HOUR = 3_600 * 10**9
NS_PER_DAY = 24 * NS_PER_HOUR
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()

# Relative activity per hour of day for people going about their day (quiet nights, evening peak).
DAYTIME_PROFILE = np.array(
    [2, 1, 1, 1, 1, 2, 4, 6, 8, 8, 8, 9, 10, 9, 8, 8, 8, 9, 10, 11, 11, 9, 6, 4], dtype=float
)


def date_to_ns(day: date) -> int:
    """Nanoseconds since the epoch of ``day`` 00:00 (UTC-naive)."""
    return (day.toordinal() - _EPOCH_ORDINAL) * NS_PER_DAY


def as_datetime64(ns: np.ndarray) -> np.ndarray:
    """View int64 nanoseconds as ``datetime64[ns]`` without copying."""
    return np.asarray(ns, dtype=np.int64).view("M8[ns]")


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function; the link from every hidden score to a probability."""
    return 1.0 / (1.0 + np.exp(-x))


def examination_probability(position: np.ndarray, eta: float) -> np.ndarray:
    """Position-based model: ``P(examine | pos) = (1 / (1 + pos)) ** eta`` for 0-based positions."""
    return (1.0 / (1.0 + np.asarray(position, dtype=float))) ** eta


def sample_times_in_day(
    rng: np.random.Generator, n: int, day_start_ns: int, hour_weights: np.ndarray
) -> np.ndarray:
    """Draw ``n`` int64-ns timestamps inside one day: hour from a profile, uniform within it."""
    probs = np.asarray(hour_weights, dtype=float)
    hours = rng.choice(len(probs), size=n, p=probs / probs.sum())
    return day_start_ns + hours * NS_PER_HOUR + rng.integers(0, NS_PER_HOUR, size=n)


def arrival_times(
    rng: np.random.Generator,
    n: int,
    start_ns: int,
    days: int,
    late_fraction: float,
    history_days: int,
) -> np.ndarray:
    """Sorted int64-ns arrival times: most before ``start_ns``, ``late_fraction`` during the run.

    Early arrivals are spread over ``history_days`` before the start; late ones uniformly over the
    generated days. At least one entity always exists at the start so day 0 can have events.
    Sorting makes ids (row numbers) increase with arrival, like auto-increment keys.
    """
    n_late = min(int(round(n * late_fraction)), n - 1)
    early = rng.integers(start_ns - history_days * NS_PER_DAY, start_ns, size=n - n_late)
    late = rng.integers(start_ns, start_ns + days * NS_PER_DAY, size=n_late)
    return np.sort(np.concatenate([early, late]))


def sample_categorical_rows(
    rng: np.random.Generator, cumulative: np.ndarray, rows: np.ndarray
) -> np.ndarray:
    """One draw per element of ``rows`` from the categorical distribution in ``cumulative[row]``.

    ``cumulative`` holds row-wise cumulative probabilities ending at 1. Offsetting row ``i`` by ``i``
    makes the flattened matrix globally sorted, so a single ``searchsorted`` serves all rows.
    """
    n_rows, n_cols = cumulative.shape
    flat = (cumulative + np.arange(n_rows)[:, None]).ravel()
    rows = np.asarray(rows, dtype=np.int64)
    hit = np.searchsorted(flat, rows + rng.random(len(rows)), side="right")
    return np.minimum(hit - rows * n_cols, n_cols - 1)


class PrefixSampler:
    """Weighted sampling among entities that already exist at a given time (optionally per group).

    Entities are ordered by (group, arrival). Arrivals are replaced by their rank among all
    arrivals, so "exists at t" becomes "rank < rank(t)" and the group can be packed into one int64
    key: a single ``searchsorted`` then gives, per draw, how many entities of its group exist, and
    a second one on cumulative weights picks among them. No per-draw Python work.
    """

    def __init__(
        self,
        weights: np.ndarray,
        arrival_ns: np.ndarray | None = None,
        groups: np.ndarray | None = None,
        n_groups: int = 1,
    ) -> None:
        n = len(weights)
        arrival = np.zeros(n, np.int64) if arrival_ns is None else np.asarray(arrival_ns, np.int64)
        group = np.zeros(n, np.int64) if groups is None else np.asarray(groups, np.int64)
        self._sorted_arrival = np.sort(arrival)
        self._span = n + 1
        order = np.lexsort((arrival, group))
        self._entity = order
        self._keys = group[order] * self._span + np.searchsorted(
            self._sorted_arrival, arrival[order]
        )
        self._group_start = np.searchsorted(group[order], np.arange(n_groups + 1))
        self._cum = np.concatenate([[0.0], np.cumsum(np.asarray(weights, float)[order])])

    def sample(
        self,
        rng: np.random.Generator,
        times_ns: np.ndarray | None,
        groups: np.ndarray | None = None,
        size: int | None = None,
    ) -> np.ndarray:
        """Entity ids, one per draw; ``-1`` where the group has no entity existing at that time."""
        n = len(times_ns) if times_ns is not None else len(groups) if groups is not None else size
        group = np.zeros(n, np.int64) if groups is None else np.asarray(groups, np.int64)
        lo = self._group_start[group]
        if times_ns is None:
            hi = self._group_start[group + 1]
        else:
            rank = np.searchsorted(self._sorted_arrival, times_ns, side="left")
            hi = np.searchsorted(self._keys, group * self._span + rank, side="left")
        target = self._cum[lo] + rng.random(n) * (self._cum[hi] - self._cum[lo])
        pick = np.clip(
            np.searchsorted(self._cum, target, side="right") - 1, lo, np.maximum(hi - 1, lo)
        )
        out = self._entity[np.minimum(pick, len(self._entity) - 1)]
        return np.where(hi > lo, out, -1)


def first_unique_per_row(candidates: np.ndarray, k: int) -> np.ndarray:
    """Keep the first ``k`` distinct non-negative ids of each row, in order; pad with ``-1``.

    Used to turn an over-sampled candidate list into a slate without duplicates.
    """
    n, m = candidates.shape
    order = np.argsort(candidates, axis=1, kind="stable")
    sorted_c = np.take_along_axis(candidates, order, axis=1)
    dup_sorted = np.zeros((n, m), dtype=bool)
    dup_sorted[:, 1:] = sorted_c[:, 1:] == sorted_c[:, :-1]
    keep = np.empty((n, m), dtype=bool)
    np.put_along_axis(keep, order, ~dup_sorted, axis=1)
    keep &= candidates >= 0
    first = np.argsort(~keep, axis=1, kind="stable")[:, :k]
    chosen = np.take_along_axis(candidates, first, axis=1)
    return np.where(np.take_along_axis(keep, first, axis=1), chosen, -1)


def solve_intercept(logits: np.ndarray, weights: np.ndarray, target: float) -> float:
    """Intercept ``b`` with ``sum(w * sigmoid(logits + b)) / sum(w) == target`` (bisection).

    Lets a world hit a target base rate (CTR, purchase rate) whatever its other parameters are.
    """
    low, high = -20.0, 20.0
    total = float(np.sum(weights))
    for _ in range(60):
        mid = 0.5 * (low + high)
        if float(np.sum(weights * sigmoid(logits + mid))) / total < target:
            low = mid
        else:
            high = mid
    return 0.5 * (low + high)


@dataclass(frozen=True)
class DayContext:
    """The day being generated: its date, index from the start, first nanosecond, and seed."""

    day: date
    index: int
    start_ns: int
    seed: int

    def rng(self, stream: int) -> np.random.Generator:
        """Independent random stream ``stream`` of this day; depends only on (seed, day, stream)."""
        return np.random.default_rng([self.seed, self.day.toordinal(), stream])


class SyntheticWorld(ABC):
    """A seeded hidden world that emits public entity tables and daily event logs.

    Subclasses implement ``_build`` (entities and hidden state) and ``_simulate_day`` (column
    arrays for one day, hidden columns prefixed ``hidden_``); this class handles seeding, range
    checks, sorting by ``event_time`` and the split between public and hidden columns.
    """

    entity_tables: ClassVar[tuple[str, ...]] = ()
    event_columns: ClassVar[tuple[str, ...]] = ()
    row_id_column: ClassVar[str | None] = None

    def __init__(self, params: Any, seed: int, start_date: date, days: int) -> None:
        if days < 1:
            raise ValueError(f"days must be >= 1, got {days}")
        self.params = params
        self.seed = int(seed)
        self.start_date = date(start_date.year, start_date.month, start_date.day)
        self.days = int(days)
        self.start_ns = date_to_ns(self.start_date)
        self.end_ns = self.start_ns + self.days * NS_PER_DAY
        self._tables: dict[str, pd.DataFrame] = {}
        self._build()

    @property
    def end_date(self) -> date:
        """First day after the generated range (exclusive end)."""
        return self.start_date + timedelta(days=self.days)

    def world_rng(self, stream: int) -> np.random.Generator:
        """World-build stream; day streams use the day ordinal (>= 1), so they never collide."""
        return np.random.default_rng([self.seed, 0, stream])

    def entity_table(self, name: str) -> pd.DataFrame:
        """Public columns of entity table ``name`` (a copy, so callers cannot alter the world)."""
        if name not in self._tables:
            raise ValueError(f"unknown entity table {name!r}; expected one of {self.entity_tables}")
        return self._tables[name].copy()

    def events_for_day(self, day: date) -> pd.DataFrame:
        """Public events of ``day``, sorted by ``event_time``, all within that day."""
        return self._day_frame(day, hidden=False)

    def events_with_hidden(self, day: date) -> pd.DataFrame:
        """Same rows as ``events_for_day`` plus ``hidden_*`` ground-truth columns (tests, oracles)."""
        return self._day_frame(day, hidden=True)

    def _day_frame(self, day: date, hidden: bool) -> pd.DataFrame:
        day = date(day.year, day.month, day.day)
        index = (day - self.start_date).days
        if not 0 <= index < self.days:
            raise ValueError(
                f"day {day} is outside the generated range "
                f"[{self.start_date}, {self.end_date}) (start_date + {self.days} days)"
            )
        context = DayContext(day, index, date_to_ns(day), self.seed)
        columns = self._simulate_day(context)
        order = np.argsort(columns["event_time"], kind="stable")
        columns = {name: values[order] for name, values in columns.items()}
        if self.row_id_column is not None:
            # Ids follow time order and stay unique across days: day_index * 1e9 + row.
            n_rows = len(columns["event_time"])
            columns[self.row_id_column] = context.index * 10**9 + np.arange(n_rows, dtype=np.int64)
        names = list(self.event_columns)
        if hidden:
            names += sorted(name for name in columns if name.startswith("hidden_"))
        return pd.DataFrame({name: columns[name] for name in names})

    def _set_table(self, name: str, columns: dict[str, np.ndarray]) -> None:
        """Register a public entity table built from column arrays."""
        self._tables[name] = pd.DataFrame(columns)

    @abstractmethod
    def _build(self) -> None:
        """Draw entities and hidden state from ``world_rng`` streams and register entity tables."""

    @abstractmethod
    def _simulate_day(self, context: DayContext) -> dict[str, np.ndarray]:
        """Column arrays of one day's events (public names plus ``hidden_*``), any row order."""
