"""Synthetic recommendation feed: slates of items shown to users, with clicks and purchases.

Generative story
----------------
Hidden state (never emitted):

* ``n_categories`` unit-norm category centroids in ``R^latent_dim``.
* Item latent ``v_i = centroid[category_i] + brand_offset[brand_i] + noise``: category and brand
  (public) explain most of an item's latent, so content features carry signal for cold items.
  Each brand has a home category; 80% of items get a brand whose home is their category.
* Item quality ``q_i ~ N(0, 0.5)`` and a popularity prior ``exp(0.8 q_i + N(0, 0.8))``.
* User taste ``u_j = sum_c mix_jc centroid_c + country_offset[country_j] + noise`` with a sparse
  Dirichlet(0.3) category mixture ``mix_j``; a click bias ``N(0, 0.5)``; an activity level
  (lognormal, how often they request the feed); a primary device; and a price sensitivity that
  falls with age bucket (younger users are more price sensitive).

Observed: ``users`` (country, age bucket, signup time), ``items`` (category, brand, price,
created_at) and one row per impression. ``new_user_fraction`` of users sign up and
``new_item_fraction`` of items are created uniformly during the generated days (the rest before);
a request or impression at time ``t`` only involves users/items created strictly before ``t``.

Each day has ``requests_per_day`` requests at diurnal times. The requesting user is drawn by
activity among existing users; the device is their primary one 80% of the time. The logging policy
over-samples candidates from three sources - popular (by popularity prior, 35%), uniformly random
(20%) and noisily personalised (45%: a category from the user's mixture, then a popular item of
it) - removes duplicates, keeps ``slate_size`` and orders them by a noisy score
``0.1 log(popularity) + 0.15 affinity + N(0, 1)``, so positions are only mildly confounded with
attractiveness.

Labels: with ``z`` the user-item affinity ``u.v`` standardised over random pairs,

* ``clicked = examined AND attracted`` where ``P(examined) = (1/(1+position))^position_bias`` and
  ``P(attracted) = sigmoid(1.6 z + q_i + user_bias + device_effect + b_click)``;
* ``purchased = clicked AND sigmoid(1.2 z + 0.4 q_i - sensitivity_j log(price/median) + b_buy)``.

``b_click`` and ``b_buy`` are solved at build time on a pilot of logged slates so the overall CTR
is about 6% and the purchase rate given a click about 10% whatever the sizes (unless a steep
``position_bias`` on a long slate leaves too little examination for 6%: attraction is capped).

Drift (``params.drift``, off by default) changes only days with index ``>= from_day``; earlier
days are the same rows with or without it. At build time, from a random stream of its own, a
quarter of the categories (at least one) become trending and a ``taste_shift`` share of users get
a new category mixture ``Dirichlet(2.0 on trending, 0.1 elsewhere)``: their latent swaps the old
mixture's centroid sum for the new one (country offset and noise kept). On drifted days clicks and
purchases follow the new tastes while the logging policy stays as it was (a stale recommender:
the same slates in the same order), so clicks move towards trending categories and the click
rate changes. Calibration and all earlier days ignore the drift.

Learnable signal: user/item ids (collaborative), category/brand/price (content, cold start),
country/age (user cold start), device, and position (bias to be corrected, not exploited).
"""

from __future__ import annotations

from datetime import date
from typing import ClassVar

import numpy as np

from assets.raw.synthetic.base import (
    DAYTIME_PROFILE,
    DayContext,
    PrefixSampler,
    SyntheticWorld,
    arrival_times,
    as_datetime64,
    examination_probability,
    first_unique_per_row,
    sample_categorical_rows,
    sample_times_in_day,
    sigmoid,
    solve_intercept,
)
from configs.schema.source import FeedGeneratorParams

COUNTRIES = np.array(["US", "GB", "DE", "FR", "BR", "IN", "JP", "ES"], dtype=object)
_COUNTRY_WEIGHTS = np.array([0.30, 0.12, 0.10, 0.10, 0.12, 0.14, 0.06, 0.06])
AGE_BUCKETS = np.array(["18-24", "25-34", "35-44", "45-54", "55+"], dtype=object)
_AGE_WEIGHTS = np.array([0.18, 0.30, 0.22, 0.16, 0.14])
_AGE_PRICE_SENSITIVITY = np.array([1.3, 1.0, 0.85, 0.75, 0.7])
DEVICES = np.array(["mobile", "desktop", "tablet"], dtype=object)
_DEVICE_WEIGHTS = np.array([0.6, 0.3, 0.1])
_DEVICE_EFFECT = np.array([0.1, 0.0, -0.15])
_SOURCE_PROBS = np.array([0.35, 0.20, 0.45])  # popular, random, personalised
TARGET_CTR = 0.06
TARGET_PURCHASE_RATE = 0.10
_PILOT_REQUESTS = 4000


def _names(prefix: str, n: int, min_width: int) -> np.ndarray:
    """Zero-padded names such as ``cat_03`` or ``brand_017`` (sortable as text)."""
    width = max(min_width, len(str(n - 1)))
    return np.array([f"{prefix}_{i:0{width}d}" for i in range(n)], dtype=object)


class FeedWorld(SyntheticWorld):
    """Feed world: ``users`` and ``items`` entity tables and daily impression logs."""

    entity_tables: ClassVar[tuple[str, ...]] = ("users", "items")
    event_columns: ClassVar[tuple[str, ...]] = (
        "request_id",
        "user_id",
        "item_id",
        "position",
        "device",
        "event_time",
        "clicked",
        "purchased",
    )

    def __init__(self, params: FeedGeneratorParams, seed: int, start_date: date, days: int) -> None:
        if not isinstance(params, FeedGeneratorParams):
            raise TypeError(f"FeedWorld needs FeedGeneratorParams, got {type(params).__name__}")
        super().__init__(params, seed, start_date, days)

    def _build(self) -> None:
        self._build_items(self.world_rng(1))
        self._build_users(self.world_rng(2))
        self._calibrate(self.world_rng(3))
        self._drifted_user_vectors: np.ndarray | None = None
        if self.params.drift is not None:
            self._build_drift(self.world_rng(4))

    def _build_items(self, rng: np.random.Generator) -> None:
        """Item latents from category, brand and noise; price, popularity, arrival."""
        p = self.params
        d, n = p.latent_dim, p.n_items
        centroids = rng.normal(size=(p.n_categories, d))
        self.centroids = centroids / np.linalg.norm(centroids, axis=1, keepdims=True)
        category = rng.choice(p.n_categories, size=n, p=rng.dirichlet(np.full(p.n_categories, 2.0)))
        brand_home = rng.integers(0, p.n_categories, size=p.n_brands)
        brand = PrefixSampler(
            np.ones(p.n_brands), groups=brand_home, n_groups=p.n_categories
        ).sample(rng, None, groups=category)
        stray = (brand < 0) | (rng.random(n) < 0.2)
        brand = np.where(stray, rng.integers(0, p.n_brands, size=n), brand)
        brand_offset = rng.normal(0.0, 0.35 / np.sqrt(d), size=(p.n_brands, d))
        self.item_vectors = (
            self.centroids[category]
            + brand_offset[brand]
            + rng.normal(0, 0.45 / np.sqrt(d), (n, d))
        )
        self.item_quality = rng.normal(0.0, 0.5, size=n)
        self.item_popularity = np.exp(0.8 * self.item_quality + rng.normal(0.0, 0.8, size=n))
        log_price = (
            rng.uniform(np.log(8), np.log(150), p.n_categories)[category]
            + rng.normal(0.0, 0.3, p.n_brands)[brand]
            + rng.normal(0.0, 0.45, n)
        )
        self.item_price = np.maximum(np.round(np.exp(log_price), 2), 0.5)
        self._log_price_rel = np.log(self.item_price / np.median(self.item_price))
        created = arrival_times(rng, n, self.start_ns, self.days, p.new_item_fraction, 365)
        self._popular_items = PrefixSampler(self.item_popularity, created)
        self._random_items = PrefixSampler(np.ones(n), created)
        self._category_items = PrefixSampler(
            self.item_popularity, created, category, p.n_categories
        )
        self._set_table(
            "items",
            {
                "item_id": np.arange(n, dtype=np.int64),
                "category": _names("cat", p.n_categories, 2)[category],
                "brand": _names("brand", p.n_brands, 3)[brand],
                "price": self.item_price,
                "created_at": as_datetime64(created),
            },
        )

    def _build_users(self, rng: np.random.Generator) -> None:
        """User tastes (category mixture + country + noise), habits and signup times."""
        p = self.params
        d, n = p.latent_dim, p.n_users
        country = rng.choice(len(COUNTRIES), size=n, p=_COUNTRY_WEIGHTS)
        age = rng.choice(len(AGE_BUCKETS), size=n, p=_AGE_WEIGHTS)
        self.user_mixture = rng.dirichlet(np.full(p.n_categories, 0.3), size=n)
        country_offset = rng.normal(0.0, 0.3 / np.sqrt(d), size=(len(COUNTRIES), d))
        self.user_vectors = (
            self.user_mixture @ self.centroids
            + country_offset[country]
            + rng.normal(0.0, 0.35 / np.sqrt(d), size=(n, d))
        )
        self.user_bias = rng.normal(0.0, 0.5, size=n)
        self.user_price_sensitivity = _AGE_PRICE_SENSITIVITY[age] * rng.lognormal(0.0, 0.3, n)
        self._primary_device = rng.choice(len(DEVICES), size=n, p=_DEVICE_WEIGHTS)
        policy_mix = self.user_mixture + 0.02
        self._policy_cumulative = np.cumsum(policy_mix / policy_mix.sum(1, keepdims=True), axis=1)
        signup = arrival_times(rng, n, self.start_ns, self.days, p.new_user_fraction, 730)
        self._users = PrefixSampler(rng.lognormal(0.0, 1.0, size=n), signup)
        pairs = self._affinity_raw(rng.integers(0, n, 20_000), rng.integers(0, p.n_items, 20_000))
        self._affinity_mean, self._affinity_std = float(pairs.mean()), float(pairs.std())
        self._set_table(
            "users",
            {
                "user_id": np.arange(n, dtype=np.int64),
                "signup_time": as_datetime64(signup),
                "country": COUNTRIES[country],
                "age_bucket": AGE_BUCKETS[age],
            },
        )

    def _build_drift(self, rng: np.random.Generator) -> None:
        """Trending categories and the drifted tastes of a ``taste_shift`` share of users."""
        p, drift = self.params, self.params.drift
        n_trending = max(1, round(p.n_categories / 4))
        self.trending_categories = np.sort(rng.choice(p.n_categories, n_trending, replace=False))
        alpha = np.full(p.n_categories, 0.1)
        alpha[self.trending_categories] = 2.0
        new_mixture = rng.dirichlet(alpha, size=p.n_users)
        self.drifted_users = np.zeros(p.n_users, bool)
        self.drifted_users[rng.permutation(p.n_users)[: round(drift.taste_shift * p.n_users)]] = (
            True
        )
        mixture = np.where(self.drifted_users[:, None], new_mixture, self.user_mixture)
        self._drifted_user_vectors = (
            self.user_vectors + (mixture - self.user_mixture) @ self.centroids
        )

    def _affinity_raw(
        self, users: np.ndarray, items: np.ndarray, user_vectors: np.ndarray | None = None
    ) -> np.ndarray:
        vectors = self.user_vectors if user_vectors is None else user_vectors
        return np.einsum("ij,ij->i", vectors[users], self.item_vectors[items])

    def affinity(
        self, users: np.ndarray, items: np.ndarray, user_vectors: np.ndarray | None = None
    ) -> np.ndarray:
        """Hidden standardised user-item affinity ``z`` (mean 0, sd 1 over random pairs).

        ``user_vectors`` replaces the users' tastes (drifted days); the standardisation stays.
        """
        raw = self._affinity_raw(users, items, user_vectors)
        return (raw - self._affinity_mean) / self._affinity_std

    def _calibrate(self, rng: np.random.Generator) -> None:
        """Solve the click and purchase intercepts on a pilot of logged slates."""
        self._click_bias, self._buy_bias = 0.0, 0.0
        times = np.sort(rng.integers(self.start_ns, self.end_ns, size=_PILOT_REQUESTS))
        rows = self._build_slates(rng, times)
        click_logit, buy_logit = self._logits(rows)
        exam = examination_probability(rows["position"], self.params.position_bias)
        # Weighted by examination, the target is the attraction rate among examined impressions.
        attraction_target = min(TARGET_CTR * len(exam) / exam.sum(), 0.95)
        self._click_bias = solve_intercept(click_logit, exam, attraction_target)
        click_prob = exam * sigmoid(click_logit + self._click_bias)
        self._buy_bias = solve_intercept(buy_logit, click_prob, TARGET_PURCHASE_RATE)

    def _build_slates(self, rng: np.random.Generator, times: np.ndarray) -> dict[str, np.ndarray]:
        """Logging policy: one de-duplicated, ordered slate per request time (rows flattened)."""
        n, k = len(times), self.params.slate_size
        users = self._users.sample(rng, times)
        device = np.where(
            rng.random(n) < 0.8, self._primary_device[users], rng.integers(0, len(DEVICES), n)
        )
        slates = first_unique_per_row(self._candidates(rng, times, users, 2 * k + 4), k)
        valid = slates >= 0
        slate_users = np.broadcast_to(users[:, None], slates.shape)
        z = np.where(
            valid, self.affinity(slate_users.ravel(), slates.ravel()).reshape(slates.shape), 0
        )
        score = (
            0.1 * np.log(self.item_popularity[slates]) + 0.15 * z + rng.normal(size=slates.shape)
        )
        order = np.argsort(np.where(valid, -score, np.inf), axis=1, kind="stable")
        slates, z = np.take_along_axis(slates, order, 1), np.take_along_axis(z, order, 1)
        request, position = np.nonzero(slates >= 0)
        return {
            "request": request,
            "user": users[request],
            "item": slates[request, position],
            "position": position.astype(np.int64),
            "device": device[request],
            "affinity": z[request, position],
        }

    def _candidates(
        self, rng: np.random.Generator, times: np.ndarray, users: np.ndarray, m: int
    ) -> np.ndarray:
        """``m`` candidate items per request from the popular/random/personalised sources."""
        t = np.repeat(times, m)
        source = rng.choice(3, size=len(t), p=_SOURCE_PROBS)
        cand = self._popular_items.sample(rng, t)
        is_random = source == 1
        cand[is_random] = self._random_items.sample(rng, t[is_random])
        personal = np.flatnonzero(source == 2)
        category = sample_categorical_rows(
            rng, self._policy_cumulative, np.repeat(users, m)[personal]
        )
        picked = self._category_items.sample(rng, t[personal], category)
        cand[personal] = np.where(picked >= 0, picked, cand[personal])
        return cand.reshape(len(times), m)

    def _logits(self, rows: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Attraction and purchase logits (before intercepts are added by the caller)."""
        user, item, z = rows["user"], rows["item"], rows["affinity"]
        click = (
            1.6 * z
            + self.item_quality[item]
            + self.user_bias[user]
            + _DEVICE_EFFECT[rows["device"]]
            + self._click_bias
        )
        buy = (
            1.2 * z
            + 0.4 * self.item_quality[item]
            - self.user_price_sensitivity[user] * self._log_price_rel[item]
            + self._buy_bias
        )
        return click, buy

    def _simulate_day(self, context: DayContext) -> dict[str, np.ndarray]:
        times = np.sort(
            sample_times_in_day(
                context.rng(0), self.params.requests_per_day, context.start_ns, DAYTIME_PROFILE
            )
        )
        rows = self._build_slates(context.rng(1), times)
        drift = self.params.drift
        if drift is not None and context.index >= drift.from_day:
            # the policy (slates and their order) is stale; the users' responses follow new tastes
            rows["affinity"] = self.affinity(rows["user"], rows["item"], self._drifted_user_vectors)
        click_logit, buy_logit = self._logits(rows)
        exam = examination_probability(rows["position"], self.params.position_bias)
        attract, buy = sigmoid(click_logit), sigmoid(buy_logit)
        rng = context.rng(2)
        n = len(exam)
        clicked = (rng.random(n) < exam) & (rng.random(n) < attract)
        purchased = clicked & (rng.random(n) < buy)
        return {
            "request_id": context.index * 10**9 + rows["request"].astype(np.int64),
            "user_id": rows["user"].astype(np.int64),
            "item_id": rows["item"].astype(np.int64),
            "position": rows["position"],
            "device": DEVICES[rows["device"]],
            "event_time": as_datetime64(times[rows["request"]]),
            "clicked": clicked.astype(np.int8),
            "purchased": purchased.astype(np.int8),
            "hidden_affinity": rows["affinity"],
            "hidden_examine_prob": exam,
            "hidden_attract_prob": attract,
            "hidden_purchase_prob": buy,
        }
