"""Judging an A/B test from one row per unit: split check, test per arm, CUPED, verdict.

The input is a per-unit table (the unit of assignment, e.g. one row per user): its arm, its
outcome and optionally a pre-period covariate (the same metric before the test). Analysing
per unit, not per event, keeps the units independent, which every test below assumes.

In the order a reader should trust the result:

1. **Sample-ratio mismatch.** A chi-square goodness-of-fit test of the units per arm against
   the planned weights. A broken split (bucketing bugs, bots, a crashing arm) biases every
   comparison, so a flag at ``p < 0.001`` (the usual, deliberately strict threshold: the test
   is run on every experiment, often repeatedly) overrides every verdict.
2. **One test per treatment arm against the control** (the first arm): a two-proportion z test
   (statsmodels ``proportions_ztest``, pooled) with a Wald interval for the difference when the
   outcome is 0/1, Welch's t test and interval (scipy, ``equal_var=False``) otherwise. With more
   than two arms, ``correction="bonferroni"`` tests each at ``alpha / comparisons`` (and widens
   the intervals to match), so the chance of any false winner stays at most ``alpha``.
3. **CUPED** when a covariate column is named: ``y - theta (x - mean x)`` with
   ``theta = cov(y, x) / var(x)`` pooled over all arms. Assignment is independent of ``x``, so
   the difference stays unbiased while its variance shrinks by the squared correlation; the
   adjusted outcome is compared with Welch's test and the reduction achieved is reported.
4. **A verdict**, first match wins: ``srm`` for a broken split (worth knowing at once, at any
   size); ``insufficient_sample`` before both arms have their planned units (looking early and
   often inflates false positives); then ``treatment_wins`` / ``control_wins`` when the p-value
   is below the per-comparison alpha, else ``no_significant_difference``. The z test's p-value
   (pooled variance) and the Wald interval (unpooled) can disagree at the margin; the verdict
   follows the p-value.

Degenerate inputs give defined answers, never NaN verdicts: an arm with fewer than 2 units is
``insufficient_sample``; an outcome constant within both arms has a zero standard error, so the
difference is exact (p = 1 if the arms agree, 0 otherwise); a constant covariate disables CUPED.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

from assets.experiments.plan import Correction, check_weights, comparison_alpha

Verdict = Literal[
    "insufficient_sample", "srm", "treatment_wins", "control_wins", "no_significant_difference"
]
MetricType = Literal["auto", "binary", "continuous"]
SRM_THRESHOLD = 0.001
MIN_UNITS = 2

# ----------------------------------------------------------------------------- sample ratio


@dataclass(frozen=True)
class SrmResult:
    """Units per arm against the planned split; ``flagged`` when ``p_value < threshold``."""

    observed: dict[str, int]
    expected: dict[str, float]
    statistic: float
    p_value: float
    flagged: bool


def srm_check(
    counts: Mapping[str, int], weights: Mapping[str, float], threshold: float = SRM_THRESHOLD
) -> SrmResult:
    """Chi-square goodness of fit of the units per arm to the planned weights.

    An arm with no units counts as 0 observed (a crashing arm is exactly what this catches).
    """
    shares = check_weights(weights)
    unknown = sorted(set(counts) - set(shares))
    if unknown:
        raise ValueError(
            f"units in arms the experiment does not have: {unknown} (arms: {list(shares)})"
        )
    observed = {arm: int(counts.get(arm, 0)) for arm in shares}
    total = sum(observed.values())
    if total == 0:
        raise ValueError("no units in any arm: nothing to check")
    scale = sum(shares.values())
    expected = {arm: total * share / scale for arm, share in shares.items()}
    result = scipy_stats.chisquare(list(observed.values()), list(expected.values()))
    p_value = float(result.pvalue)
    return SrmResult(observed, expected, float(result.statistic), p_value, p_value < threshold)


# ----------------------------------------------------------------------------- two-sample tests


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


# ----------------------------------------------------------------------------- CUPED


def cuped_theta(outcome: np.ndarray, covariate: np.ndarray) -> float:
    """``cov(y, x) / var(x)``: the slope that removes the covariate's share of the variance."""
    variance = float(np.var(covariate, ddof=1))
    if variance == 0:
        return 0.0
    return float(np.cov(outcome, covariate, ddof=1)[0, 1]) / variance


def cuped_adjust(outcome: np.ndarray, covariate: np.ndarray, theta: float) -> np.ndarray:
    """``y - theta (x - mean x)``, the mean taken over every unit so no arm is shifted apart."""
    return outcome - theta * (covariate - covariate.mean())


def _mean_variance(values: np.ndarray) -> float:
    """Variance of the mean of ``values``."""
    return float(np.var(values, ddof=1)) / len(values)


# ----------------------------------------------------------------------------- analysis


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


STATISTIC_COLUMNS = (
    "mean", "mean_control", "diff", "ci_low", "ci_high", "relative_lift", "relative_ci_low",
    "relative_ci_high", "p_value",
)  # fmt: skip
FRAME_COLUMNS = (
    ("arm", "control", "n", "n_control", "planned_n", "planned_n_control")
    + STATISTIC_COLUMNS
    + ("alpha", "test", "cuped", "variance_reduction", "verdict")
)


@dataclass(frozen=True)
class ExperimentAnalysis:
    """The split check, the metric type found, CUPED's theta and one comparison per arm."""

    srm: SrmResult
    metric: Literal["binary", "continuous"]
    theta: float | None
    comparisons: list[ArmComparison]

    @property
    def verdicts(self) -> dict[str, Verdict]:
        """Treatment arm -> verdict."""
        return {c.arm: c.verdict for c in self.comparisons}

    def to_frame(self) -> pd.DataFrame:
        """One row per comparison (None as NaN), for tables, metadata and the CLI."""
        frame = pd.DataFrame([asdict(c) for c in self.comparisons], columns=list(FRAME_COLUMNS))
        for column in ("planned_n", "planned_n_control"):
            frame[column] = frame[column].astype("Int64")
        frame[list(STATISTIC_COLUMNS)] = frame[list(STATISTIC_COLUMNS)].astype(float)
        return frame


def _units_table(
    units: pd.DataFrame, arm_column: str, outcome_column: str, covariate_column: str | None
) -> pd.DataFrame:
    """The columns analysed, checked: present, no missing arm or outcome, numeric values."""
    wanted = [arm_column, outcome_column] + ([covariate_column] if covariate_column else [])
    missing = [c for c in wanted if c not in units.columns]
    if missing:
        raise ValueError(f"units table: missing column(s) {missing} (has: {list(units.columns)})")
    table = units[wanted].copy()
    if table[arm_column].isna().any():
        raise ValueError(
            f"units table: {int(table[arm_column].isna().sum())} rows have no {arm_column!r}"
        )
    table[arm_column] = table[arm_column].astype(str)
    for column in wanted[1:]:
        values = table[column]
        if pd.api.types.is_bool_dtype(values):
            values = values.astype(float)
        if not pd.api.types.is_numeric_dtype(values):
            raise ValueError(f"units table: column {column!r} must be numeric, got {values.dtype}")
        table[column] = values.astype(float)
    bad = ~np.isfinite(table[outcome_column])
    if bad.any():
        raise ValueError(
            f"units table: {int(bad.sum())} rows have a missing or infinite {outcome_column!r};"
            " every assigned unit needs an outcome (0 for no conversion)"
        )
    return table


def _metric_type(outcome: pd.Series, metric: MetricType) -> Literal["binary", "continuous"]:
    is_binary = bool(outcome.isin([0.0, 1.0]).all())
    if metric == "binary" and not is_binary:
        raise ValueError("metric 'binary' needs outcomes of 0 and 1 only")
    if metric not in ("auto", "binary", "continuous"):
        raise ValueError(f"metric must be 'auto', 'binary' or 'continuous', got {metric!r}")
    if metric == "auto":
        return "binary" if is_binary else "continuous"
    return metric


def _planned(planned_n: Mapping[str, int] | int | None, arms: list[str]) -> dict[str, int | None]:
    if planned_n is None:
        return dict.fromkeys(arms)
    if not isinstance(planned_n, Mapping):
        return dict.fromkeys(arms, int(planned_n))
    missing = [arm for arm in arms if arm not in planned_n]
    if missing:
        raise ValueError(f"planned_n has no entry for arm(s) {missing}")
    return {arm: int(planned_n[arm]) for arm in arms}


def _cuped_outcome(
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


def _compare(
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


def analyze_experiment(
    units: pd.DataFrame,
    weights: Mapping[str, float],
    *,
    planned_n: Mapping[str, int] | int | None,
    alpha: float = 0.05,
    correction: Correction = "bonferroni",
    metric: MetricType = "auto",
    higher_is_better: bool = True,
    arm_column: str = "arm",
    outcome_column: str = "outcome",
    covariate_column: str | None = None,
    srm_threshold: float = SRM_THRESHOLD,
) -> ExperimentAnalysis:
    """Compare every arm with the control (the first key of ``weights``) from one row per unit.

    ``planned_n`` is the units each arm must reach before a winner is named (e.g.
    ``ExperimentPlan.units``, or one number for every arm); ``None`` lifts that guard and is only
    for exploring. ``metric="auto"`` uses the z test when every outcome is 0 or 1;
    ``covariate_column`` (the metric before the test) turns CUPED on. ``higher_is_better=False``
    is for metrics such as a chargeback rate. Raises ``ValueError`` on missing columns, unknown
    arms, missing outcomes or weights that do not sum to 1.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    shares = check_weights(weights)
    control, *treatments = shares
    table = _units_table(units, arm_column, outcome_column, covariate_column)
    kind = _metric_type(table[outcome_column], metric)
    srm = srm_check(table[arm_column].value_counts().to_dict(), shares, srm_threshold)
    per_test_alpha = comparison_alpha(alpha, len(treatments), correction)
    planned = _planned(planned_n, list(shares))
    outcome = table[outcome_column].to_numpy()
    analysed, theta = _cuped_outcome(outcome, table[covariate_column] if covariate_column else None)
    by_arm = table[arm_column].to_numpy()

    comparisons = []
    for arm in treatments:
        in_t, in_c = by_arm == arm, by_arm == control
        base = {
            "arm": arm,
            "control": control,
            "n": int(in_t.sum()),
            "n_control": int(in_c.sum()),
            "planned_n": planned[arm],
            "planned_n_control": planned[control],
            "alpha": per_test_alpha,
            "cuped": theta is not None,
        }
        if min(base["n"], base["n_control"]) < MIN_UNITS:
            test = "welch_cuped" if theta is not None else "z_test" if kind == "binary" else "welch"
            verdict: Verdict = "srm" if srm.flagged else "insufficient_sample"
            comparisons.append(ArmComparison(**base, test=test, verdict=verdict))
            continue
        raw = (outcome[in_t], outcome[in_c])
        adjusted = (analysed[in_t], analysed[in_c])
        comparisons.append(_compare(base, raw, adjusted, kind, srm.flagged, higher_is_better))
    return ExperimentAnalysis(srm, kind, theta, comparisons)
