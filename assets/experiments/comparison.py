"""One treatment arm against the control: the test, the relative lift and the verdict.

Given one arm's outcomes and the control's (raw, and as analysed: CUPED-adjusted or the same),
:func:`compare_arm` picks the test (:mod:`assets.experiments.two_sample`), reports the variance
CUPED removed and the lift relative to the control, and names the verdict. The verdict's rules
live here, next to the numbers they read, apart from the table handling of
:func:`assets.experiments.analysis.analyze_experiment`.

The verdict, first match wins: ``srm`` for a broken split (worth knowing at once, at any size);
``insufficient_sample`` before both arms have their planned units (looking early and often
inflates false positives); then ``treatment_wins`` / ``control_wins`` when the p-value is below
the per-comparison alpha, else ``no_significant_difference``. Where the z test's p-value and the
Wald interval disagree at the margin, the verdict follows the p-value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import stats as scipy_stats

from assets.experiments.two_sample import Difference, proportion_test, welch_test

Verdict = Literal[
    "insufficient_sample", "srm", "treatment_wins", "control_wins", "no_significant_difference"
]


@dataclass(frozen=True)
class ArmComparison:
    """One treatment arm against the control.

    ``mean`` and ``mean_control`` are the raw arm means; ``diff``, its interval and the p-value
    come from the analysed outcome (CUPED-adjusted when ``cuped``). ``relative_lift`` is
    ``diff / mean_control`` with a delta-method interval (None when the control mean is 0).
    ``alpha`` is the per-comparison level after any correction. The statistics are None when an
    arm has fewer than 2 units.
    """

    arm: str
    control: str
    n: int
    n_control: int
    planned_n: int | None
    planned_n_control: int | None
    alpha: float
    test: str
    cuped: bool
    verdict: Verdict
    variance_reduction: float = 0.0
    mean: float | None = None
    mean_control: float | None = None
    diff: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    relative_lift: float | None = None
    relative_ci_low: float | None = None
    relative_ci_high: float | None = None
    p_value: float | None = None


def _mean_variance(values: np.ndarray) -> float:
    """Variance of the mean of ``values``."""
    return float(np.var(values, ddof=1)) / len(values)


def _relative_interval(
    mean_control: float, diff: float, var_mean: float, var_mean_control: float, alpha: float
) -> tuple[float | None, float | None, float | None]:
    """``diff / mean_control`` and the delta-method interval of ``mean_t / mean_c - 1``."""
    if mean_control == 0:
        return None, None, None
    lift = diff / mean_control
    mean = mean_control + diff
    se = math.sqrt(var_mean / mean_control**2 + mean**2 * var_mean_control / mean_control**4)
    z = float(scipy_stats.norm.ppf(1 - alpha / 2))
    return lift, lift - z * se, lift + z * se


def _verdict(
    srm_flagged: bool, enough: bool, difference: Difference, alpha: float, higher_is_better: bool
) -> Verdict:
    if srm_flagged:
        return "srm"
    if not enough:
        return "insufficient_sample"
    if not difference.p_value < alpha or difference.diff == 0:
        return "no_significant_difference"
    better = difference.diff > 0 if higher_is_better else difference.diff < 0
    return "treatment_wins" if better else "control_wins"


def compare_arm(
    base: dict[str, Any],
    raw: tuple[np.ndarray, np.ndarray],
    analysed: tuple[np.ndarray, np.ndarray],
    kind: str,
    srm_flagged: bool,
    higher_is_better: bool,
) -> ArmComparison:
    """One comparison from the fields every comparison has (``base``) and the (treatment,
    control) outcomes, raw and as analysed (CUPED-adjusted or the same)."""
    (y_t, y_c), (a_t, a_c) = raw, analysed
    alpha = base["alpha"]
    if base["cuped"]:
        difference = welch_test(a_t, a_c, alpha, test="welch_cuped")
    elif kind == "binary":
        difference = proportion_test(int(y_t.sum()), len(y_t), int(y_c.sum()), len(y_c), alpha)
    else:
        difference = welch_test(y_t, y_c, alpha)
    raw_variance = _mean_variance(y_t) + _mean_variance(y_c)
    variance = _mean_variance(a_t) + _mean_variance(a_c)
    reduction = 1 - variance / raw_variance if base["cuped"] and raw_variance > 0 else 0.0
    mean_control = float(y_c.mean())
    lift, lift_low, lift_high = _relative_interval(
        mean_control, difference.diff, _mean_variance(a_t), _mean_variance(a_c), alpha
    )
    enough = all(
        planned is None or n >= planned
        for n, planned in ((len(y_t), base["planned_n"]), (len(y_c), base["planned_n_control"]))
    )
    return ArmComparison(
        **base,
        test=difference.test,
        verdict=_verdict(srm_flagged, enough, difference, alpha, higher_is_better),
        variance_reduction=reduction,
        mean=float(y_t.mean()),
        mean_control=mean_control,
        diff=difference.diff,
        ci_low=difference.ci_low,
        ci_high=difference.ci_high,
        relative_lift=lift,
        relative_ci_low=lift_low,
        relative_ci_high=lift_high,
        p_value=difference.p_value,
    )
