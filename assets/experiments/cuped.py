"""CUPED: the outcome less its share explained by a pre-period covariate, for tighter intervals.

``y - theta (x - mean x)`` with ``theta = cov(y, x) / var(x)`` pooled over all arms. Assignment
is independent of ``x``, so the difference between arms stays unbiased while its variance shrinks
by the squared correlation. A separate step from the tests themselves: the adjusted outcome is
then compared with Welch's test (:mod:`assets.experiments.two_sample`). A constant covariate
disables CUPED.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def cuped_theta(outcome: np.ndarray, covariate: np.ndarray) -> float:
    """``cov(y, x) / var(x)``: the slope that removes the covariate's share of the variance."""
    variance = float(np.var(covariate, ddof=1))
    if variance == 0:
        return 0.0
    return float(np.cov(outcome, covariate, ddof=1)[0, 1]) / variance


def cuped_adjust(outcome: np.ndarray, covariate: np.ndarray, theta: float) -> np.ndarray:
    """``y - theta (x - mean x)``, the mean taken over every unit so no arm is shifted apart."""
    return outcome - theta * (covariate - covariate.mean())


def cuped_outcome(
    outcome: np.ndarray, covariate: pd.Series | None
) -> tuple[np.ndarray, float | None]:
    """The CUPED-adjusted outcome and theta; the outcome as is when the covariate cannot help.

    Units without a pre-period value get the covariate's mean, so their adjustment is zero.
    """
    if covariate is None or covariate.isna().all():
        return outcome, None
    values = covariate.fillna(covariate.mean()).to_numpy()
    if np.ptp(values) == 0:
        return outcome, None
    theta = cuped_theta(outcome, values)
    return cuped_adjust(outcome, values, theta), theta
