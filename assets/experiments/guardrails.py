"""Guardrail tests: is the treatment no worse than the control by more than the margin?

Every guardrail is measured as a **degradation** in the units of its margin, positive when the
treatment is worse: ``s * (value / value_control - 1)`` for a relative margin,
``s * (value - value_control)`` for an absolute one (``s = -1`` when higher is better). Two
one-sided questions are asked of it, each with the test that fits when it is asked:

* **Non-inferiority** (H0: degradation >= margin), asked once the planned sample is reached, as
  the primary metric's test is: a fixed-sample test, and the evidence a ship decision needs.
* **Harm** (H0: degradation <= margin), asked at every look: an always-valid mSPRT
  (:mod:`assets.experiments.sequential`), so a guardrail worse than its margin stops the test as
  soon as that shows, without the repeated looks inflating false alarms. Harm means worse than
  the margin allows: a degradation shown above zero but below the margin is what the margin says
  is acceptable.

Per metric:

* **Means per unit** (``error_rate``, a label's rate): Welch's test of the linear combination
  ``mean_t - (1 + s m) mean_c`` (relative) or ``mean_t - mean_c - s m`` (absolute) against 0,
  statsmodels ``ttest_ind(..., usevar="unequal", value=...)``; one row per unit keeps the units
  independent, as for the primary metric.
* **A latency quantile** (``latency_p99``): a bootstrap over **units** (``scipy.stats.bootstrap``
  resampling each arm's units with all their requests). Not a quantile test on requests: a
  unit's requests are not independent (same user, same batch, the latency the log records is the
  batch's), and a test treating requests as independent would be too confident; resampling the
  unit of assignment keeps the correlation, and needs no density estimate at the 99th
  percentile, which an analytic variance of a tail quantile would. The non-inferiority p-value is
  the share of resampled degradations at or above the margin, its bound the (1 - alpha)
  percentile; the harm test is the mSPRT with the bootstrap standard error.

Bounds are the inverted tests (scipy ``brentq``), so a bound and its p-value always agree on the
margin. Too few units (fewer than :data:`MIN_SEQUENTIAL_UNITS` in an arm) leaves a guardrail
``pending``: the tests rest on a normal approximation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import optimize
from scipy import stats as scipy_stats
from statsmodels.stats.weightstats import ttest_ind

from assets.experiments.sequential import always_valid_p_value, confidence_radius

# Fewest units per arm before a guardrail is tested: the tests rest on the central limit theorem.
MIN_SEQUENTIAL_UNITS = 30
BOOTSTRAP_RESAMPLES = 2000
# Largest (resamples x units) block the bootstrap holds at once (8 MB of int64): small blocks
# stay in cache, which measured faster than large ones.
_BOOTSTRAP_CELLS = 1_000_000


@dataclass(frozen=True)
class GuardrailTest:
    """One guardrail of one treatment arm against the control: the evidence of both tests.

    ``degradation`` is the estimate (positive = worse, in the margin's units: a share of the
    control value when ``relative``); ``harm_bound`` the always-valid lower bound of it (at
    ``harm_alpha``), ``ni_bound`` the fixed-sample upper bound (at ``ni_alpha``).
    ``sd_per_unit`` is the spread of one unit's contribution to the degradation, what a sample
    size for this guardrail is planned from. Statistics are None when they cannot be computed
    (too few units; a relative margin on a control value of 0 has no bounds).
    """

    guardrail: str
    metric: str
    arm: str
    control: str
    test: str
    higher_is_better: bool
    relative: bool
    margin: float
    n: int
    n_control: int
    value: float | None = None
    value_control: float | None = None
    degradation: float | None = None
    harm_bound: float | None = None
    ni_bound: float | None = None
    ni_p_value: float | None = None
    harm_p_value: float | None = None
    sd_per_unit: float | None = None


def _sign(higher_is_better: bool) -> int:
    """+1 when a higher value is worse, -1 when it is better: degradation = sign x change."""
    return -1 if higher_is_better else 1


def _degradation(value: float, control: float, relative: bool, sign: int) -> float | None:
    if relative:
        return None if control == 0 else sign * (value / control - 1)
    return sign * (value - control)


def _invert(p_value: Callable[[float], float], start: float, step: float, alpha: float) -> float:
    """Where ``p_value`` (monotone, >= alpha at ``start``) crosses alpha, searched from ``start``
    in the direction of ``step``'s sign; +-inf when it never does within 2**60 steps."""
    if p_value(start) <= alpha:
        return start
    far = start + step
    for _ in range(60):
        if p_value(far) <= alpha:
            return float(optimize.brentq(lambda r: p_value(r) - alpha, start, far, xtol=1e-12))
        start, far = far, far + (far - start)
    return math.copysign(math.inf, step)


def _one_sided_always_valid(gap: float, variance: float, tau: float, worse: bool) -> float:
    """Always-valid p of "the gap is on the worse side of 0" (``worse``: the gap's sign that
    means harm is positive); 1 when the estimate lies on the other side."""
    if not (gap > 0 if worse else gap < 0):
        return 1.0
    return always_valid_p_value(gap, 0.0, variance, tau)


def mean_guardrail(
    treatment: np.ndarray,
    control: np.ndarray,
    *,
    margin: float,
    relative: bool,
    higher_is_better: bool,
    ni_alpha: float,
    harm_alpha: float,
    names: dict[str, str],
) -> GuardrailTest:
    """Non-inferiority (Welch) and harm (mSPRT) of a per-unit mean, one value per unit.

    ``names`` holds ``guardrail``, ``metric``, ``arm`` and ``control`` for the result.
    """
    sign = _sign(higher_is_better)
    base = {
        **names,
        "test": "welch_noninferiority",
        "higher_is_better": higher_is_better,
        "relative": relative,
        "margin": margin,
        "n": len(treatment),
        "n_control": len(control),
    }
    if min(len(treatment), len(control)) < MIN_SEQUENTIAL_UNITS:
        return GuardrailTest(**base)
    mean_t, mean_c = float(np.mean(treatment)), float(np.mean(control))
    var_t, var_c = float(np.var(treatment, ddof=1)), float(np.var(control, ddof=1))
    scale = abs(mean_c) if relative else 1.0
    tau = margin * scale if scale > 0 else math.sqrt(var_t / len(treatment) + var_c / len(control))

    def combination(r: float) -> tuple[np.ndarray, float]:
        """(control values as compared, value) for "degradation = r" as a difference of means."""
        return ((1 + sign * r) * control, 0.0) if relative else (control, sign * r)

    def ni_p(r: float) -> float:
        compared, value = combination(r)
        if np.ptp(treatment) == 0 and np.ptp(compared) == 0:  # no spread: the difference is exact
            gap = mean_t - float(compared[0]) - value
            return 0.0 if sign * gap < 0 else 1.0
        alternative = "smaller" if sign > 0 else "larger"
        return float(
            ttest_ind(treatment, compared, alternative=alternative, usevar="unequal", value=value)[
                1
            ]
        )

    def harm_p(r: float) -> float:
        compared, value = combination(r)
        gap = mean_t - float(np.mean(compared)) - value
        variance = var_t / len(treatment) + float(np.var(compared, ddof=1)) / len(compared)
        return _one_sided_always_valid(sign * gap, variance, max(tau, 1e-300), worse=True)

    degradation = _degradation(mean_t, mean_c, relative, sign)
    bounded = degradation is not None
    step = max(abs(degradation or 0.0), margin)
    return GuardrailTest(
        **base,
        value=mean_t,
        value_control=mean_c,
        degradation=degradation,
        harm_bound=_invert(harm_p, degradation, -step, harm_alpha) if bounded else None,
        ni_bound=_invert(ni_p, degradation, step, ni_alpha) if bounded else None,
        ni_p_value=ni_p(margin),
        harm_p_value=harm_p(margin),
        sd_per_unit=math.sqrt(var_c) / scale if scale > 0 else None,
    )


def _unit_codes(units: np.ndarray) -> tuple[np.ndarray, int]:
    """Each request's unit as 0..n-1, and n."""
    _, codes = np.unique(units, return_inverse=True)
    return codes.ravel(), int(codes.max()) + 1 if len(codes) else 0


class _ArmQuantile:
    """One arm's latency quantile, recomputed for resampled units without copying requests.

    A resample of units is a count per unit; each request weighs its unit's count, and the
    quantile is the inverted empirical CDF of the weighted, pre-sorted latencies (NumPy's
    ``inverted_cdf``, which is what counts of 1 give for the observed sample): the lowest
    latency with at most ``(1 - q)`` of the weight above it. Only the slowest requests are
    scanned (a few times the ``1 - q`` share), and a resample whose quantile falls below them is
    recomputed over every request, so a p99 over a million requests stays affordable.
    """

    def __init__(self, latencies: np.ndarray, units: np.ndarray, quantile: float) -> None:
        order = np.argsort(latencies, kind="stable")
        self.sorted = np.asarray(latencies, dtype=float)[order]
        self.codes, self.n_units = _unit_codes(np.asarray(units)[order])
        self.per_unit = np.bincount(self.codes, minlength=self.n_units)
        self.quantile = quantile
        self.tail = min(len(self.sorted), math.ceil(4 * (1 - quantile) * len(self.sorted)) + 200)

    def _position(self, weights: np.ndarray, allowed: np.ndarray) -> np.ndarray:
        """Per row, the first index whose weight above it is at most ``allowed``, and a flag
        for rows where that index may lie before the columns given."""
        above = np.cumsum(weights[:, ::-1], axis=1)[:, ::-1] - weights
        fits = above <= allowed[:, None]
        return np.argmax(fits, axis=1), fits[:, 0]

    def __call__(self, resampled: np.ndarray) -> np.ndarray:
        """The quantile per row of ``resampled`` (rows of unit indices)."""
        rows = resampled.reshape(-1, resampled.shape[-1])
        shifted = rows + self.n_units * np.arange(len(rows))[:, None]
        counts = np.bincount(shifted.ravel(), minlength=len(rows) * self.n_units).reshape(
            len(rows), self.n_units
        )
        total = (counts @ self.per_unit).astype(float)
        allowed = total - self.quantile * total
        start = len(self.sorted) - self.tail
        position, unsure = self._position(counts[:, self.codes[start:]], allowed)
        position = position + start
        if start > 0 and unsure.any():
            full, _ = self._position(counts[unsure][:, self.codes], allowed[unsure])
            position[unsure] = full
        return self.sorted[position].reshape(resampled.shape[:-1])


def quantile_guardrail(
    treatment: tuple[np.ndarray, np.ndarray],
    control: tuple[np.ndarray, np.ndarray],
    *,
    quantile: float,
    margin: float,
    relative: bool,
    higher_is_better: bool,
    ni_alpha: float,
    harm_alpha: float,
    names: dict[str, str],
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> GuardrailTest:
    """Non-inferiority and harm of a latency quantile, from (latencies, their units) per arm,
    by a bootstrap over units (seeded, so a look is reproducible)."""
    sign = _sign(higher_is_better)
    arm_t, arm_c = (_ArmQuantile(*side, quantile) for side in (treatment, control))
    base = {
        **names,
        "test": f"unit_bootstrap_p{quantile * 100:g}",
        "higher_is_better": higher_is_better,
        "relative": relative,
        "margin": margin,
        "n": arm_t.n_units,
        "n_control": arm_c.n_units,
    }
    if min(arm_t.n_units, arm_c.n_units) < MIN_SEQUENTIAL_UNITS:
        return GuardrailTest(**base)

    def degradation_of(idx_t: np.ndarray, idx_c: np.ndarray, axis: int = -1) -> np.ndarray:
        value, value_c = arm_t(np.moveaxis(idx_t, axis, -1)), arm_c(np.moveaxis(idx_c, axis, -1))
        if relative:
            return sign * (value / value_c - 1)
        return sign * (value - value_c)

    every_t, every_c = np.arange(arm_t.n_units), np.arange(arm_c.n_units)
    value, value_c = float(arm_t(every_t)), float(arm_c(every_c))
    degradation = _degradation(value, value_c, relative, sign)
    if degradation is None:  # a control quantile of 0 ms: no relative change to speak of
        return GuardrailTest(**base, value=value, value_control=value_c)
    largest = max(arm_t.n_units, arm_c.n_units, arm_t.tail, arm_c.tail)
    result = scipy_stats.bootstrap(
        (every_t, every_c),
        degradation_of,
        n_resamples=resamples,
        batch=max(1, _BOOTSTRAP_CELLS // largest),
        vectorized=True,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    draws = np.asarray(result.bootstrap_distribution, dtype=float)
    se = float(np.std(draws, ddof=1))
    harm_radius = confidence_radius(se * se, margin, harm_alpha)
    return GuardrailTest(
        **base,
        value=value,
        value_control=value_c,
        degradation=degradation,
        harm_bound=degradation - harm_radius,
        ni_bound=float(np.quantile(draws, 1 - ni_alpha)),
        ni_p_value=float((1 + np.sum(draws >= margin)) / (len(draws) + 1)),
        harm_p_value=_one_sided_always_valid(degradation - margin, se * se, margin, worse=True),
        sd_per_unit=se / math.sqrt(1 / arm_t.n_units + 1 / arm_c.n_units),
    )
