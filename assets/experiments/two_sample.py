"""Two-sample tests of one treatment arm against the control: the difference and its interval.

The outcome's type picks the test: a two-proportion z test (statsmodels ``proportions_ztest``,
pooled) with a Wald interval for the difference when the outcome is 0/1, Welch's t test and
interval (scipy, ``equal_var=False``) otherwise. Both answer in one shape, :class:`Difference`,
so the verdict (:mod:`assets.experiments.comparison`) reads either the same way. The z test's
p-value (pooled variance) and the Wald interval (unpooled) can disagree at the margin.

Degenerate inputs give defined answers, never NaN: an outcome constant within both arms has a
zero standard error, so the difference is exact (p = 1 if the arms agree, 0 otherwise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

MIN_UNITS = 2


@dataclass(frozen=True)
class Difference:
    """Treatment minus control: the estimate, its two-sided interval, p-value and test name."""

    test: str
    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    statistic: float


def _exact(test: str, diff: float) -> Difference:
    """Zero standard error: the difference is known exactly, significant unless it is 0."""
    if diff == 0:
        return Difference(test, diff, diff, diff, 1.0, 0.0)
    return Difference(test, diff, diff, diff, 0.0, math.copysign(math.inf, diff))


def proportion_test(
    successes: int, n: int, successes_control: int, n_control: int, alpha: float = 0.05
) -> Difference:
    """Two-proportion z test (pooled under the null) and the Wald interval of the difference."""
    if min(n, n_control) < MIN_UNITS:
        raise ValueError(f"each arm needs at least {MIN_UNITS} units, got {n} and {n_control}")
    diff = successes / n - successes_control / n_control
    pooled = (successes + successes_control) / (n + n_control)
    if pooled in (0.0, 1.0):
        return _exact("z_test", diff)
    statistic, p_value = proportions_ztest([successes, successes_control], [n, n_control])
    low, high = confint_proportions_2indep(
        successes, n, successes_control, n_control, method="wald", compare="diff", alpha=alpha
    )
    return Difference("z_test", diff, float(low), float(high), float(p_value), float(statistic))


def welch_test(
    treatment: np.ndarray, control: np.ndarray, alpha: float = 0.05, test: str = "welch"
) -> Difference:
    """Welch's t test (unequal variances) and its interval for ``mean(treatment) - mean(control)``."""
    if min(len(treatment), len(control)) < MIN_UNITS:
        raise ValueError(
            f"each arm needs at least {MIN_UNITS} units, got {len(treatment)} and {len(control)}"
        )
    diff = float(np.mean(treatment) - np.mean(control))
    if np.ptp(treatment) == 0 and np.ptp(control) == 0:
        return _exact(test, diff)
    result = scipy_stats.ttest_ind(treatment, control, equal_var=False)
    interval = result.confidence_interval(confidence_level=1 - alpha)
    return Difference(
        test,
        diff,
        float(interval.low),
        float(interval.high),
        float(result.pvalue),
        float(result.statistic),
    )
