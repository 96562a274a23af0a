"""Synthetic card-payment world: legitimate spending, fraud rings and account takeovers.

Generative story
----------------
Hidden state (never emitted): per card a typical amount (lognormal around 35), an activity level
(lognormal; how many of the day's transactions it makes), and 1-2 usual devices (ids
``4 * card_id + k``); per merchant a popularity. Public: ``cards`` (home country, type, issue
time; 5% are issued during the generated days) and ``merchants`` (mcc, country).

Each day has ``transactions_per_day`` rows: ``Binomial(n, fraud_rate * ring_share)`` ring rows,
``Binomial(n, fraud_rate * (1 - ring_share))`` takeover rows and legitimate rows for the rest,
so the fraud share matches ``fraud_rate`` up to binomial noise.

* Legitimate: time from a daytime profile; card by activity among cards issued before it. 2% of
  cards travel on a given day: their transactions happen in another country at merchants there.
  Otherwise the merchant is in the home country, except 6% cross-border online purchases. The
  channel is online with the mcc's online propensity (always online cross-border); amount is
  ``typical * mcc_multiplier * LogNormal(0, 0.5)``; the device is a usual one (1% a new phone).
* Fraud ring: bursts of ``1 + Poisson(3)`` transactions per compromised card, ``2 + Poisson(4)``
  cards per ring. A ring starts at a night-heavy hour; each card's burst begins within an hour of
  it and lasts at most 45 minutes. A ring uses one country, two merchants of high-risk mccs
  (electronics, gift_cards, online_retail, travel) and two brand-new devices shared by its cards;
  70% online. Amounts are ``typical * mcc_multiplier * LogNormal(log 3, 0.4)``, gift cards in
  round denominations.
* Account takeover: a card gets one new device and makes ``2 + Poisson(2)`` online transactions at
  high-risk merchants within two hours, from abroad 60% of the time, amounts
  ``typical * mcc_multiplier * LogNormal(log 4, 0.5)``.

Drift (``params.drift``, off by default) changes only days with index ``>= from_day``; earlier
days are the same rows with or without it, and it draws from extra random streams so that it
changes nothing else. ``amount_scale`` multiplies every amount (rounded to cents, >= 0.50).
``channel_shift`` moves that share of legitimate pos rows online (negative: domestic online rows to
pos). ``new_pattern`` is the share of fraud rows (the fraud rate is unchanged) from cloned cards
(``hidden_kind`` 3): small bursts of ``1 + Poisson(1)`` pos transactions in daytime at everyday
(not high-risk) merchants in the card's home country, on the card's own device, amounts
``typical * mcc_multiplier * LogNormal(log 1.5, 0.4)``. It looks like legitimate traffic, so a
model trained before the drift loses recall.

``country`` is where the transaction happened (the cardholder's or fraudster's location).
Labels: ``is_fraud`` is 1 for ring and takeover rows. ``label_time`` is when the label is known:
``event_time + LogNormal`` chargeback delay with mean ``chargeback_delay_mean_days`` for fraud,
``event_time + label_maturity_days`` for legitimate rows. Learnable signal: amount (absolute and
relative to the card's history), mcc, country != home_country, device novelty for the card, hour,
and per-card velocity; device sharing across cards exposes rings.
"""

from __future__ import annotations

from datetime import date
from typing import ClassVar

import numpy as np

from assets.raw.synthetic.base import (
    DAYTIME_PROFILE,
    NS_PER_DAY,
    NS_PER_HOUR,
    DayContext,
    PrefixSampler,
    SyntheticWorld,
    arrival_times,
    as_datetime64,
    sample_times_in_day,
)
from configs.schema.source import FraudDrift, FraudGeneratorParams

COUNTRIES = np.array(
    ["US", "GB", "DE", "FR", "ES", "IT", "NL", "CA", "BR", "MX", "IN", "TR"], dtype=object
)
_CARD_COUNTRY_WEIGHTS = np.array([35, 12, 10, 10, 7, 7, 5, 6, 3, 2, 2, 1], dtype=float) / 100
CARD_TYPES = np.array(["credit", "debit", "prepaid"], dtype=object)
_CARD_TYPE_WEIGHTS = np.array([0.55, 0.40, 0.05])
# name: (merchant share, amount multiplier, online propensity, high risk)
_MCC_TABLE = {
    "grocery": (0.18, 1.0, 0.05, False),
    "restaurants": (0.16, 0.8, 0.05, False),
    "fuel": (0.10, 1.1, 0.0, False),
    "pharmacy": (0.07, 0.7, 0.10, False),
    "apparel": (0.09, 1.6, 0.35, False),
    "entertainment": (0.08, 0.9, 0.50, False),
    "online_retail": (0.14, 1.4, 0.95, True),
    "electronics": (0.07, 3.5, 0.45, True),
    "travel": (0.05, 6.0, 0.70, True),
    "gift_cards": (0.06, 2.0, 0.60, True),
}
MCCS = np.array(list(_MCC_TABLE), dtype=object)
_MCC_SHARE, _MCC_MULTIPLIER, _MCC_ONLINE, _MCC_RISKY = (
    np.array(column) for column in zip(*_MCC_TABLE.values(), strict=True)
)
_GIFT_CARD = int(np.flatnonzero(MCCS == "gift_cards")[0])
_GIFT_DENOMINATIONS = np.array([50.0, 100.0, 200.0, 250.0, 500.0])
CHANNELS = np.array(["online", "pos"], dtype=object)
# Fraud bursts start by hour 20 so that even the longest burst ends inside the day.
_RING_START_PROFILE = np.array([9, 10, 10, 9, 8, 5, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 3, 4.0])
_ATO_START_PROFILE = np.array([4, 4, 4, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3.0])
# Cloned-card bursts (drift's new pattern) start in daytime by hour 20 and last under three hours.
_CLONE_START_PROFILE = DAYTIME_PROFILE[:21]
_NEW_DEVICE_BASE = 10**12
_CHARGEBACK_SIGMA = 0.6
_MINUTE = 60 * 10**9


def _burst_sizes(
    rng: np.random.Generator, n_rows: int, minimum: int, mean_extra: float
) -> np.ndarray:
    """Sizes ``minimum + Poisson(mean_extra)`` of consecutive bursts, cut to sum to ``n_rows``."""
    sizes = minimum + rng.poisson(mean_extra, size=max(n_rows, 1))
    ends = np.cumsum(sizes)
    n_bursts = int(np.searchsorted(ends, n_rows)) + 1
    sizes = sizes[:n_bursts].copy()
    sizes[-1] -= ends[n_bursts - 1] - n_rows
    return sizes


class FraudWorld(SyntheticWorld):
    """Card-fraud world: ``cards`` and ``merchants`` entity tables and daily transactions."""

    entity_tables: ClassVar[tuple[str, ...]] = ("cards", "merchants")
    row_id_column: ClassVar[str | None] = "transaction_id"
    event_columns: ClassVar[tuple[str, ...]] = (
        "transaction_id",
        "card_id",
        "merchant_id",
        "event_time",
        "amount",
        "mcc",
        "device_id",
        "country",
        "hour",
        "channel",
        "is_fraud",
        "label_time",
    )

    def __init__(
        self, params: FraudGeneratorParams, seed: int, start_date: date, days: int
    ) -> None:
        if not isinstance(params, FraudGeneratorParams):
            raise TypeError(f"FraudWorld needs FraudGeneratorParams, got {type(params).__name__}")
        super().__init__(params, seed, start_date, days)

    def _build(self) -> None:
        self._build_cards(self.world_rng(1))
        self._build_merchants(self.world_rng(2))

    def _build_cards(self, rng: np.random.Generator) -> None:
        """Cards with hidden spending habits; ids follow issue time."""
        n = self.params.n_cards
        self.card_home = rng.choice(len(COUNTRIES), size=n, p=_CARD_COUNTRY_WEIGHTS)
        card_type = rng.choice(len(CARD_TYPES), size=n, p=_CARD_TYPE_WEIGHTS)
        self.card_typical_amount = rng.lognormal(np.log(35.0), 0.6, size=n)
        self.card_n_devices = 1 + (rng.random(n) < 0.4)
        issued = arrival_times(rng, n, self.start_ns, self.days, 0.05, 4 * 365)
        self._active_cards = PrefixSampler(rng.lognormal(0.0, 0.8, size=n), issued)
        self._any_card = PrefixSampler(np.ones(n), issued)
        self._set_table(
            "cards",
            {
                "card_id": np.arange(n, dtype=np.int64),
                "home_country": COUNTRIES[self.card_home],
                "card_type": CARD_TYPES[card_type],
                "issued_at": as_datetime64(issued),
            },
        )

    def _build_merchants(self, rng: np.random.Generator) -> None:
        """Merchants by mcc and country, with samplers for local, any and high-risk picks."""
        n, n_countries = self.params.n_merchants, len(COUNTRIES)
        self.merchant_mcc = rng.choice(len(MCCS), size=n, p=_MCC_SHARE / _MCC_SHARE.sum())
        self.merchant_country = np.where(
            rng.random(n) < 0.85,
            rng.choice(n_countries, size=n, p=_CARD_COUNTRY_WEIGHTS),
            rng.integers(0, n_countries, size=n),
        )
        popularity = rng.lognormal(0.0, 1.0, size=n)
        self._local_merchants = PrefixSampler(popularity, None, self.merchant_country, n_countries)
        self._any_merchant = PrefixSampler(popularity)
        risky = _MCC_RISKY[self.merchant_mcc]
        self._risky_merchants = PrefixSampler(risky.astype(float) if risky.any() else np.ones(n))
        # Everyday (not high-risk) merchants, for drift's cloned-card pattern; no random draws.
        everyday = popularity * ~risky if not risky.all() else popularity
        self._everyday_local = PrefixSampler(everyday, None, self.merchant_country, n_countries)
        self._everyday_any = PrefixSampler(everyday)
        self._set_table(
            "merchants",
            {
                "merchant_id": np.arange(n, dtype=np.int64),
                "mcc": MCCS[self.merchant_mcc],
                "merchant_country": COUNTRIES[self.merchant_country],
            },
        )

    def _amount(
        self,
        rng: np.random.Generator,
        card: np.ndarray,
        merchant: np.ndarray,
        log_mean: float,
        sigma: float,
    ) -> np.ndarray:
        """``typical(card) * multiplier(mcc) * LogNormal(log_mean, sigma)``, rounded to cents, >= 0.50."""
        mcc = self.merchant_mcc[merchant]
        scale = self.card_typical_amount[card] * _MCC_MULTIPLIER[mcc]
        amount = np.round(scale * rng.lognormal(log_mean, sigma, size=len(card)), 2)
        return np.maximum(amount, 0.5)

    def _legit(
        self, rng: np.random.Generator, context: DayContext, n: int
    ) -> dict[str, np.ndarray]:
        """``n`` legitimate transactions: home (or travel) country, usual devices, daytime."""
        times = sample_times_in_day(rng, n, context.start_ns, DAYTIME_PROFILE)
        card = self._active_cards.sample(rng, times)
        n_cards, n_countries = self.params.n_cards, len(COUNTRIES)
        travelling = rng.random(n_cards) < 0.02
        abroad = (self.card_home + rng.integers(1, n_countries, size=n_cards)) % n_countries
        country = np.where(travelling[card], abroad[card], self.card_home[card])
        merchant = self._local_merchants.sample(rng, None, groups=country)
        cross_border = (~travelling[card] & (rng.random(n) < 0.06)) | (merchant < 0)
        merchant[cross_border] = self._any_merchant.sample(rng, None, size=int(cross_border.sum()))
        online = cross_border | (rng.random(n) < _MCC_ONLINE[self.merchant_mcc[merchant]])
        device = 4 * card + rng.integers(0, self.card_n_devices[card])
        new_phone = rng.random(n) < 0.01
        device[new_phone] = _NEW_DEVICE_BASE + rng.integers(
            0, _NEW_DEVICE_BASE, int(new_phone.sum())
        )
        return {
            "card": card,
            "merchant": merchant,
            "time": times,
            "amount": self._amount(rng, card, merchant, 0.0, 0.5),
            "device": device,
            "country": country,
            "online": online,
            "kind": np.zeros(n, np.int8),
        }

    def _rings(
        self, rng: np.random.Generator, context: DayContext, n: int
    ) -> dict[str, np.ndarray]:
        """``n`` fraud-ring rows: bursts of compromised cards on shared devices and merchants."""
        burst_size = _burst_sizes(rng, n, 1, 3.0)
        ring_cards = 2 + rng.poisson(4.0, size=len(burst_size))
        ring = np.searchsorted(np.cumsum(ring_cards), np.arange(len(burst_size)), side="right")
        n_rings = int(ring[-1]) + 1
        ring_start = sample_times_in_day(rng, n_rings, context.start_ns, _RING_START_PROFILE)
        burst_start = ring_start[ring] + rng.integers(0, 60 * _MINUTE, size=len(burst_size))
        burst_card = self._any_card.sample(rng, ring_start[ring])
        ring_merchants = self._risky_merchants.sample(rng, None, size=2 * n_rings).reshape(-1, 2)
        ring_devices = _NEW_DEVICE_BASE + rng.integers(0, _NEW_DEVICE_BASE, size=(n_rings, 2))
        ring_country = rng.integers(0, len(COUNTRIES), size=n_rings)
        burst = np.repeat(np.arange(len(burst_size)), burst_size)
        row_ring, card = ring[burst], burst_card[burst]
        merchant = ring_merchants[row_ring, rng.integers(0, 2, size=n)]
        amount = self._amount(rng, card, merchant, np.log(3.0), 0.4)
        gift = self.merchant_mcc[merchant] == _GIFT_CARD
        amount[gift] = rng.choice(_GIFT_DENOMINATIONS, size=int(gift.sum()))
        return {
            "card": card,
            "merchant": merchant,
            "time": burst_start[burst] + rng.integers(0, 45 * _MINUTE, size=n),
            "amount": amount,
            "device": ring_devices[row_ring, rng.integers(0, 2, size=n)],
            "country": ring_country[row_ring],
            "online": rng.random(n) < 0.7,
            "kind": np.ones(n, np.int8),
        }

    def _takeovers(
        self, rng: np.random.Generator, context: DayContext, n: int
    ) -> dict[str, np.ndarray]:
        """``n`` takeover rows: a new device, then high-amount online purchases in two hours."""
        burst_size = _burst_sizes(rng, n, 2, 2.0)
        n_bursts = len(burst_size)
        start = sample_times_in_day(rng, n_bursts, context.start_ns, _ATO_START_PROFILE)
        burst_card = self._any_card.sample(rng, start)
        n_countries = len(COUNTRIES)
        foreign = (
            self.card_home[burst_card] + rng.integers(1, n_countries, n_bursts)
        ) % n_countries
        burst_country = np.where(rng.random(n_bursts) < 0.6, foreign, self.card_home[burst_card])
        burst_device = _NEW_DEVICE_BASE + rng.integers(0, _NEW_DEVICE_BASE, size=n_bursts)
        burst = np.repeat(np.arange(n_bursts), burst_size)
        card = burst_card[burst]
        merchant = self._risky_merchants.sample(rng, None, size=n)
        return {
            "card": card,
            "merchant": merchant,
            "time": start[burst] + rng.integers(0, 120 * _MINUTE, size=n),
            "amount": self._amount(rng, card, merchant, np.log(4.0), 0.5),
            "device": burst_device[burst],
            "country": burst_country[burst],
            "online": np.ones(n, bool),
            "kind": np.full(n, 2, np.int8),
        }

    def _cloned(
        self, rng: np.random.Generator, context: DayContext, n: int
    ) -> dict[str, np.ndarray]:
        """``n`` cloned-card rows (drift): daytime pos bursts at home, everyday mccs, own device."""
        burst_size = _burst_sizes(rng, n, 1, 1.0)
        start = sample_times_in_day(rng, len(burst_size), context.start_ns, _CLONE_START_PROFILE)
        burst_card = self._any_card.sample(rng, start)
        burst = np.repeat(np.arange(len(burst_size)), burst_size)
        card = burst_card[burst]
        country = self.card_home[card]
        merchant = self._everyday_local.sample(rng, None, groups=country)
        missing = merchant < 0
        merchant[missing] = self._everyday_any.sample(rng, None, size=int(missing.sum()))
        return {
            "card": card,
            "merchant": merchant,
            "time": start[burst] + rng.integers(0, 180 * _MINUTE, size=n),
            "amount": self._amount(rng, card, merchant, np.log(1.5), 0.4),
            "device": 4 * card + rng.integers(0, self.card_n_devices[card]),
            "country": country,
            "online": np.zeros(n, bool),
            "kind": np.full(n, 3, np.int8),
        }

    def _drift(self, context: DayContext) -> FraudDrift | None:
        """The drift in force on this day, if any."""
        drift = self.params.drift
        return drift if drift is not None and context.index >= drift.from_day else None

    def _simulate_day(self, context: DayContext) -> dict[str, np.ndarray]:
        p, drift = self.params, self._drift(context)
        new_share = drift.new_pattern if drift is not None else 0.0
        old_fraud_rate = p.fraud_rate * (1 - new_share)
        counts = context.rng(0)
        n_ring = int(counts.binomial(p.transactions_per_day, old_fraud_rate * p.ring_share))
        n_ato = int(counts.binomial(p.transactions_per_day, old_fraud_rate * (1 - p.ring_share)))
        n_new = (
            int(context.rng(5).binomial(p.transactions_per_day, p.fraud_rate * new_share))
            if new_share > 0
            else 0
        )
        n_legit = max(p.transactions_per_day - n_ring - n_ato - n_new, 0)
        parts = [self._legit(context.rng(1), context, n_legit)]
        if n_ring:
            parts.append(self._rings(context.rng(2), context, n_ring))
        if n_ato:
            parts.append(self._takeovers(context.rng(3), context, n_ato))
        if n_new:
            parts.append(self._cloned(context.rng(6), context, n_new))
        rows = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
        if drift is not None:
            self._shift(rows, drift, context.rng(7))
        return self._columns(rows, context)

    def _shift(
        self, rows: dict[str, np.ndarray], drift: FraudDrift, rng: np.random.Generator
    ) -> None:
        """Apply drift's channel shift and amount scale to the day's rows, in place."""
        n = len(rows["card"])
        if drift.channel_shift != 0:
            legit, online = rows["kind"] == 0, rows["online"]
            moved = legit & (rng.random(n) < abs(drift.channel_shift))
            if drift.channel_shift > 0:
                rows["online"] = online | moved
            else:
                # cross-border purchases stay online: only domestic online rows move to the till
                domestic = self.merchant_country[rows["merchant"]] == rows["country"]
                rows["online"] = online & ~(moved & domestic)
        if drift.amount_scale != 1:
            rows["amount"] = np.maximum(np.round(rows["amount"] * drift.amount_scale, 2), 0.5)

    def _columns(self, rows: dict[str, np.ndarray], context: DayContext) -> dict[str, np.ndarray]:
        """Public and hidden columns from the raw row arrays, including label times."""
        p, n = self.params, len(rows["card"])
        is_fraud = rows["kind"] > 0
        mu = np.log(p.chargeback_delay_mean_days) - _CHARGEBACK_SIGMA**2 / 2
        fraud_delay_days = context.rng(4).lognormal(mu, _CHARGEBACK_SIGMA, size=n)
        delay_days = np.where(is_fraud, fraud_delay_days, p.label_maturity_days)
        time = rows["time"].astype(np.int64)
        return {
            "transaction_id": np.zeros(n, np.int64),  # set after sorting (row_id_column)
            "card_id": rows["card"].astype(np.int64),
            "merchant_id": rows["merchant"].astype(np.int64),
            "event_time": as_datetime64(time),
            "amount": rows["amount"].astype(np.float64),
            "mcc": MCCS[self.merchant_mcc[rows["merchant"]]],
            "device_id": rows["device"].astype(np.int64),
            "country": COUNTRIES[rows["country"]],
            "hour": (time - context.start_ns) // NS_PER_HOUR,
            "channel": CHANNELS[np.where(rows["online"], 0, 1)],
            "is_fraud": is_fraud.astype(np.int8),
            "label_time": as_datetime64(time + np.round(delay_days * NS_PER_DAY).astype(np.int64)),
            "hidden_kind": rows["kind"],
        }
