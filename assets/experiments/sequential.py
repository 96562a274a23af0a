"""Always-valid tests: a p-value and a bound that stay valid however often the test is looked at.

The experiment asset is materialized whenever someone asks, so a guardrail is looked at an
unknown number of times; a fixed-sample test repeated at every look would call harm that is
noise far more often than alpha. The mixture sequential probability ratio test (mSPRT, Johari,
Pekelis and Walsh, "Always valid inference", 2017, in its normal form; Robbins' normal mixture)
avoids that: for an estimate ``theta_hat`` of ``theta`` with variance ``V`` (approximately normal,
by the central limit theorem) and a normal mixing distribution of variance ``tau**2``,

    Lambda = sqrt(V / (V + tau**2)) * exp(tau**2 * (theta_hat - theta0)**2 / (2 V (V + tau**2)))

is (approximately) a nonnegative martingale under ``theta = theta0``, so by Ville's inequality
``P(Lambda >= 1/alpha at any look) <= alpha``: ``min(1, 1/Lambda)`` is a p-value valid at every
look, and the values of ``theta0`` it does not reject form a confidence sequence. The mixture is
over both signs, so using it one-sided (as here) is conservative: the one-sided error is at most
alpha. ``tau`` is the effect size the test is tuned to find fastest; a guardrail uses its margin.

No scipy or statsmodels function implements it, hence the two formulas here; both are tested
against a Monte-Carlo of repeated looks (``tests/unit/test_guardrails.py``).
"""

from __future__ import annotations

import math


def _check(variance: float, tau: float) -> None:
    if not (math.isfinite(variance) and variance >= 0):
        raise ValueError(f"the estimate's variance must be finite and >= 0, got {variance}")
    if not (math.isfinite(tau) and tau > 0):
        raise ValueError(f"the mixture scale tau must be a positive number, got {tau}")


def always_valid_p_value(estimate: float, theta0: float, variance: float, tau: float) -> float:
    """Two-sided mSPRT p-value of ``theta = theta0``: ``min(1, 1/Lambda)``.

    A zero variance (every unit the same) makes the difference exact: 0 when it differs from
    ``theta0``, else 1.
    """
    _check(variance, tau)
    gap = estimate - theta0
    if variance == 0:
        return 1.0 if gap == 0 else 0.0
    tau2 = tau * tau
    log_lambda = 0.5 * math.log(variance / (variance + tau2)) + tau2 * gap * gap / (
        2 * variance * (variance + tau2)
    )
    return 1.0 if log_lambda <= 0 else math.exp(-log_lambda)


def confidence_radius(variance: float, tau: float, alpha: float) -> float:
    """Half-width of the (1 - alpha) confidence sequence around the estimate at this look:
    ``sqrt(V (V + tau**2) / tau**2 * log((V + tau**2) / (V alpha**2)))``."""
    _check(variance, tau)
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if variance == 0:
        return 0.0
    tau2 = tau * tau
    return math.sqrt(
        variance * (variance + tau2) / tau2 * math.log((variance + tau2) / (variance * alpha**2))
    )
