"""Synthetic content-moderation world: posts by authors, labelled ok / spam / abuse / nsfw.

Generative story
----------------
Hidden state (never emitted): each author has a type, ``clean`` or one of three bad-actor types
(``spammer``, ``troll``, ``nsfw``, shares from ``params``), which fixes the class mix of their
posts, and an activity level (lognormal; spammers post three times as often). Public:
``authors`` (``verified`` yes/no, mostly clean authors; ``country``; ``joined_at``, bad actors
joining more recently).

Class of a post, by author type (ok, spam, abuse, nsfw)::

    clean    0.965 0.015 0.012 0.008
    spammer  0.30  0.64  0.02  0.04
    troll    0.45  0.02  0.50  0.03
    nsfw     0.40  0.05  0.02  0.53

so about 85% of posts are ok with the default shares, and an author's confirmed history (how
many of their earlier posts were removed, and for what) predicts the next post's class.

Signals known when the post is made, each overlapping between classes by ``signal_noise``
(1: the default overlap; 0: separable; 2: twice the spread):

* ``links``: Poisson(2.5) for spam, Poisson(0.3) otherwise;
* ``text_length``: LogNormal(log 60) for spam, LogNormal(log 180) otherwise (characters);
* ``caps_ratio``: Beta(2, 5) for abuse, Beta(1, 12) otherwise;
* ``profanity``: Poisson(2.0) for abuse, Poisson(0.15) otherwise;
* ``has_image``: 0.9 for nsfw, 0.35 for spam, 0.3 otherwise; ``skin_score`` (an image model's
  score, 0 without an image): Beta(6, 2) for nsfw images, Beta(2, 6) for other images;
* ``hour``: nsfw and abuse lean to the night (an evening-and-night profile).

Noise: each signal's informative parameter is moved towards the ok class's by a random share
scaled by ``signal_noise``, per post, so some spam has no link and some ok posts swear.

Labels: ``content_class`` (0 ok, 1 spam, 2 abuse, 3 nsfw) and one 0/1 column per bad class
(``is_spam``, ``is_abuse``, ``is_nsfw``, the same outcome, for per-author history aggregates).
``label_time`` is when moderation decided: a removal ``LogNormal`` hours after the post with mean
``review_delay_mean_hours``; an ok post counts as labelled ``label_maturity_days`` after it.
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
    sample_categorical_rows,
    sample_times_in_day,
)
from configs.schema.source import ModerationGeneratorParams

CLASSES = ("ok", "spam", "abuse", "nsfw")
OK, SPAM, ABUSE, NSFW = range(4)
AUTHOR_TYPES = ("clean", "spammer", "troll", "nsfw")
# P(class | author type): rows are author types, columns classes
CLASS_MIX = np.array(
    [
        [0.965, 0.015, 0.012, 0.008],
        [0.30, 0.64, 0.02, 0.04],
        [0.45, 0.02, 0.50, 0.03],
        [0.40, 0.05, 0.02, 0.53],
    ]
)
_ACTIVITY_BOOST = np.array([1.0, 3.0, 1.5, 1.5])  # spammers post more
COUNTRIES = np.array(["US", "GB", "DE", "FR", "BR", "IN"], dtype=object)
_COUNTRY_WEIGHTS = np.array([0.4, 0.12, 0.12, 0.1, 0.13, 0.13])
NIGHT_PROFILE = np.roll(DAYTIME_PROFILE, 5)  # peaks late evening into the small hours
_REVIEW_SIGMA = 0.7


class ModerationWorld(SyntheticWorld):
    """Moderation world: an ``authors`` entity table and daily posts with content labels."""

    entity_tables: ClassVar[tuple[str, ...]] = ("authors",)
    row_id_column: ClassVar[str | None] = "post_id"
    event_columns: ClassVar[tuple[str, ...]] = (
        "post_id",
        "author_id",
        "event_time",
        "hour",
        "text_length",
        "links",
        "caps_ratio",
        "profanity",
        "has_image",
        "skin_score",
        "content_class",
        "is_spam",
        "is_abuse",
        "is_nsfw",
        "label_time",
    )

    def __init__(
        self, params: ModerationGeneratorParams, seed: int, start_date: date, days: int
    ) -> None:
        if not isinstance(params, ModerationGeneratorParams):
            raise TypeError(
                f"ModerationWorld needs ModerationGeneratorParams, got {type(params).__name__}"
            )
        super().__init__(params, seed, start_date, days)

    def _build(self) -> None:
        """Authors with a hidden type; bad actors are newer and rarely verified."""
        p, rng = self.params, self.world_rng(1)
        n = p.n_authors
        shares = np.array([p.spammer_share, p.troll_share, p.nsfw_share])
        weights = np.r_[1.0 - shares.sum(), shares]
        self.author_type = rng.choice(len(AUTHOR_TYPES), size=n, p=weights)
        bad = self.author_type > 0
        joined = arrival_times(rng, n, self.start_ns, self.days, 0.05, 3 * 365)
        recent = rng.integers(self.start_ns - 60 * NS_PER_DAY, self.start_ns, size=n)
        joined = np.where(bad & (rng.random(n) < 0.7), recent, joined)
        verified = rng.random(n) < np.where(bad, 0.03, 0.25)
        activity = rng.lognormal(0.0, 0.8, size=n) * _ACTIVITY_BOOST[self.author_type]
        self._authors = PrefixSampler(activity, joined)
        self._set_table(
            "authors",
            {
                "author_id": np.arange(n, dtype=np.int64),
                "verified": np.where(verified, "yes", "no").astype(object),
                "country": COUNTRIES[rng.choice(len(COUNTRIES), size=n, p=_COUNTRY_WEIGHTS)],
                "joined_at": as_datetime64(joined),
            },
        )

    def _simulate_day(self, context: DayContext) -> dict[str, np.ndarray]:
        p = self.params
        rng = context.rng(1)
        n = p.posts_per_day
        day_times = sample_times_in_day(rng, n, context.start_ns, DAYTIME_PROFILE)
        night_times = sample_times_in_day(rng, n, context.start_ns, NIGHT_PROFILE)
        author = self._authors.sample(rng, day_times)
        author = np.where(author < 0, 0, author)
        cumulative = np.cumsum(CLASS_MIX, axis=1)
        cumulative[:, -1] = 1.0
        label = sample_categorical_rows(rng, cumulative, self.author_type[author])
        nightly = np.isin(label, (ABUSE, NSFW)) & (rng.random(n) < 0.6)
        times = np.where(nightly, night_times, day_times)
        signals = self._signals(context.rng(2), label)
        delay = self._label_delay(context.rng(3), label)
        return {
            "post_id": np.zeros(n, np.int64),  # set after sorting (row_id_column)
            "author_id": author.astype(np.int64),
            "event_time": as_datetime64(times),
            "hour": (times - context.start_ns) // NS_PER_HOUR,
            **signals,
            "content_class": label.astype(np.int64),
            "is_spam": (label == SPAM).astype(np.int64),
            "is_abuse": (label == ABUSE).astype(np.int64),
            "is_nsfw": (label == NSFW).astype(np.int64),
            "label_time": as_datetime64(times + delay),
            "hidden_author_type": self.author_type[author].astype(np.int8),
        }

    def _toward_ok(self, rng: np.random.Generator, bad: float, ok: float, n: int) -> np.ndarray:
        """Per post, the bad class's parameter moved towards the ok one by a noisy share."""
        share = np.clip(rng.normal(0.0, 0.35 * self.params.signal_noise, size=n), 0.0, 1.0)
        return bad + (ok - bad) * np.abs(share)

    def _signals(self, rng: np.random.Generator, label: np.ndarray) -> dict[str, np.ndarray]:
        n = len(label)
        spam, abuse, nsfw = label == SPAM, label == ABUSE, label == NSFW
        links = rng.poisson(np.where(spam, self._toward_ok(rng, 2.5, 0.3, n), 0.3))
        length_mu = np.where(spam, self._toward_ok(rng, np.log(60), np.log(180), n), np.log(180))
        text_length = np.maximum(1, np.round(rng.lognormal(length_mu, 0.6))).astype(np.int64)
        caps_a = np.where(abuse, self._toward_ok(rng, 2.0, 1.0, n), 1.0)
        caps_b = np.where(abuse, self._toward_ok(rng, 5.0, 12.0, n), 12.0)
        caps_ratio = np.round(rng.beta(caps_a, caps_b), 4)
        profanity = rng.poisson(np.where(abuse, self._toward_ok(rng, 2.0, 0.15, n), 0.15))
        image_rate = np.where(nsfw, 0.9, np.where(spam, 0.35, 0.3))
        has_image = rng.random(n) < image_rate
        skin_a = np.where(nsfw, self._toward_ok(rng, 6.0, 2.0, n), 2.0)
        skin_b = np.where(nsfw, self._toward_ok(rng, 2.0, 6.0, n), 6.0)
        skin = np.where(has_image, np.round(rng.beta(skin_a, skin_b), 4), 0.0)
        return {
            "text_length": text_length,
            "links": links.astype(np.int64),
            "caps_ratio": caps_ratio,
            "profanity": profanity.astype(np.int64),
            "has_image": has_image.astype(np.int64),
            "skin_score": skin,
        }

    def _label_delay(self, rng: np.random.Generator, label: np.ndarray) -> np.ndarray:
        """Nanoseconds from post to moderation decision: hours for removals, maturity for ok."""
        p = self.params
        mu = np.log(p.review_delay_mean_hours) - _REVIEW_SIGMA**2 / 2
        removal = rng.lognormal(mu, _REVIEW_SIGMA, size=len(label)) * NS_PER_HOUR
        ok = np.full(len(label), p.label_maturity_days * NS_PER_DAY)
        return np.round(np.where(label == OK, ok, removal)).astype(np.int64)
