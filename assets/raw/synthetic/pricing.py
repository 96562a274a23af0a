"""Synthetic delivery world: how many minutes an order takes, with a known noise floor.

Generative story
----------------
Public ``stores`` (id, cuisine, zone). Hidden per store: a popularity (lognormal; its share of
orders) and a base preparation time: the cuisine's base (:data:`CUISINES`) plus
``Normal(0, 3)`` minutes of its own.

Each day has ``orders_per_day * WEEKDAY_VOLUME[weekday]`` orders (Poisson), placed during
opening hours (10:00 to 23:00, lunch and dinner peaks; nothing before 10:00, so an hour's load
never reaches into the previous day). An order goes to a store by popularity, to a customer
``distance_km`` away (``LogNormal(log 3, 0.5)`` clipped to 0.3..15) with ``items`` (1 +
Poisson(1.5)). Its delivery time in minutes is the known sum

    base(store) + 2.0 * distance_km + 1.5 * items + WEEKDAY_MINUTES[weekday]
    + HOUR_MINUTES[hour] + load_minutes * load + Normal(0, noise_sigma)

where ``load`` is how many orders the same store took in the 60 minutes before (its kitchen
queue). The weekday and hour effects are steps by whole weekday and hour, so the events
columns ``hour`` and ``weekday`` (0 = Monday) describe them exactly.

The public target is ``delivery_seconds``, the minutes times 60 rounded to a whole second (an
integer column; the rounding adds a variance of 1/12 s², nothing next to the noise). Everything
but the noise is learnable from the public columns and the store's history (its own past
delivery times, known once each order is delivered), so a model's RMSE cannot go below
``60 * noise_sigma`` seconds on average and should come close: the world's noise floor
(:meth:`PricingWorld.noise_floor_seconds`). ``delivered_at`` (event time + delivery time) is
when the target becomes known; the minutes are clipped to 5..170, which the sum never reaches
with the defaults, so a 3-hour maturity sees every label. Hidden columns:
``hidden_expected_seconds`` (the sum without noise) and ``hidden_load``.
"""

from __future__ import annotations

from datetime import date
from typing import ClassVar

import numpy as np

from assets.raw.synthetic.base import (
    NS_PER_HOUR,
    DayContext,
    PrefixSampler,
    SyntheticWorld,
    as_datetime64,
    sample_times_in_day,
)
from configs.schema.source import PricingGeneratorParams

# cuisine: (share of stores, base preparation minutes)
CUISINES = {
    "pizza": (0.25, 18.0),
    "burger": (0.25, 12.0),
    "sushi": (0.15, 22.0),
    "indian": (0.15, 20.0),
    "salad": (0.20, 8.0),
}
CUISINE_NAMES = np.array(list(CUISINES), dtype=object)
_CUISINE_SHARE, _CUISINE_BASE = (np.array(c) for c in zip(*CUISINES.values(), strict=True))
ZONES = np.array(["north", "south", "east", "west", "centre"], dtype=object)
STORE_SIGMA = 3.0  # minutes: a store's own preparation time around its cuisine's
MINUTES_PER_KM = 2.0
MINUTES_PER_ITEM = 1.5
LOAD_WINDOW_NS = NS_PER_HOUR
MIN_MINUTES, MAX_MINUTES = 5.0, 170.0
# Monday..Sunday: order volume and minutes added (weekend evenings are busier on the roads)
WEEKDAY_VOLUME = np.array([0.9, 0.9, 0.95, 1.0, 1.15, 1.25, 1.1])
WEEKDAY_MINUTES = np.array([0.0, -1.0, -1.0, 0.0, 2.0, 5.0, 3.0])
# orders per hour of day (closed before 10:00) and minutes added by the hour's traffic
OPENING_PROFILE = np.array([0] * 10 + [3, 6, 10, 9, 5, 4, 4, 6, 10, 12, 11, 8, 5, 0], dtype=float)
HOUR_MINUTES = np.array([0] * 10 + [0, 2, 6, 5, 1, 0, 1, 4, 8, 9, 6, 3, 1, 0], dtype=float)


def store_load(
    store: np.ndarray, time_ns: np.ndarray, window_ns: int = LOAD_WINDOW_NS
) -> np.ndarray:
    """Per order, how many orders of the same store fall in the ``window_ns`` before it.

    Orders sorted by (store, time) make each store a contiguous run; a key of store and time
    within the day is then monotone, so one ``searchsorted`` finds where each window starts.
    All times must be inside one day (the key keeps only the time since midnight).
    """
    order = np.lexsort((time_ns, store))
    offset = time_ns[order] % (24 * NS_PER_HOUR)
    key = store[order].astype(np.int64) * (24 * NS_PER_HOUR + window_ns) + offset
    before = np.arange(len(order)) - np.searchsorted(key, key - window_ns, side="right")
    load = np.empty(len(order), dtype=np.int64)
    load[order] = before
    return load


class PricingWorld(SyntheticWorld):
    """Delivery world: a ``stores`` entity table and daily orders with their delivery minutes."""

    entity_tables: ClassVar[tuple[str, ...]] = ("stores",)
    row_id_column: ClassVar[str | None] = "order_id"
    event_columns: ClassVar[tuple[str, ...]] = (
        "order_id",
        "store_id",
        "event_time",
        "distance_km",
        "items",
        "hour",
        "weekday",
        "delivery_seconds",
        "delivered_at",
    )

    def __init__(
        self, params: PricingGeneratorParams, seed: int, start_date: date, days: int
    ) -> None:
        if not isinstance(params, PricingGeneratorParams):
            raise TypeError(
                f"PricingWorld needs PricingGeneratorParams, got {type(params).__name__}"
            )
        super().__init__(params, seed, start_date, days)

    def _build(self) -> None:
        rng = self.world_rng(1)
        n = self.params.n_stores
        cuisine = rng.choice(len(CUISINE_NAMES), size=n, p=_CUISINE_SHARE / _CUISINE_SHARE.sum())
        self.store_base = _CUISINE_BASE[cuisine] + rng.normal(0.0, STORE_SIGMA, size=n)
        self._stores = PrefixSampler(rng.lognormal(0.0, 0.5, size=n))
        self._set_table(
            "stores",
            {
                "store_id": np.arange(n, dtype=np.int64),
                "cuisine": CUISINE_NAMES[cuisine],
                "zone": ZONES[rng.integers(0, len(ZONES), size=n)],
            },
        )

    def noise_floor_seconds(self) -> float:
        """The lowest RMSE (in seconds) a model can expect: the noise's standard deviation."""
        return 60.0 * self.params.noise_sigma

    def expected_minutes(
        self,
        store: np.ndarray,
        distance_km: np.ndarray,
        items: np.ndarray,
        weekday: int,
        hour: np.ndarray,
        load: np.ndarray,
    ) -> np.ndarray:
        """The noise-free delivery minutes: the known sum of the module's story."""
        return (
            self.store_base[store]
            + MINUTES_PER_KM * distance_km
            + MINUTES_PER_ITEM * items
            + WEEKDAY_MINUTES[weekday]
            + HOUR_MINUTES[hour]
            + self.params.load_minutes * load
        )

    def _simulate_day(self, context: DayContext) -> dict[str, np.ndarray]:
        p = self.params
        rng = context.rng(1)
        weekday = context.day.weekday()
        n = int(rng.poisson(p.orders_per_day * WEEKDAY_VOLUME[weekday]))
        time = sample_times_in_day(rng, n, context.start_ns, OPENING_PROFILE)
        store = self._stores.sample(rng, None, size=n)
        distance = np.round(np.clip(rng.lognormal(np.log(3.0), 0.5, size=n), 0.3, 15.0), 2)
        items = 1 + rng.poisson(1.5, size=n)
        hour = (time - context.start_ns) // NS_PER_HOUR
        load = store_load(store, time)
        expected = self.expected_minutes(store, distance, items, weekday, hour, load)
        noise = context.rng(2).normal(0.0, p.noise_sigma, size=n)
        minutes = np.clip(expected + noise, MIN_MINUTES, MAX_MINUTES)
        seconds = np.round(minutes * 60).astype(np.int64)
        delivered = time + seconds * 10**9
        return {
            "order_id": np.zeros(n, np.int64),  # set after sorting (row_id_column)
            "store_id": store.astype(np.int64),
            "event_time": as_datetime64(time),
            "distance_km": distance.astype(np.float64),
            "items": items.astype(np.int64),
            "hour": hour.astype(np.int64),
            "weekday": np.full(n, weekday, np.int64),
            "delivery_seconds": seconds,
            "delivered_at": as_datetime64(delivered),
            "hidden_expected_seconds": expected * 60,
            "hidden_load": load,
        }
