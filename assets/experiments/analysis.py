"""Judging an A/B test from one row per unit: split check, test per arm, CUPED, verdict.

The input is a per-unit table (the unit of assignment, e.g. one row per user): its arm, its
outcome and optionally a pre-period covariate (the same metric before the test). Analysing
per unit, not per event, keeps the units independent, which every test below assumes.

This module is the entry point, :func:`analyze_experiment`: it checks the inputs
(:mod:`assets.experiments.analysis_inputs`) and runs the steps below in order, each in a module
of its own (:mod:`~assets.experiments.srm`, :mod:`~assets.experiments.two_sample`,
:mod:`~assets.experiments.cuped`, :mod:`~assets.experiments.comparison`), and lays the result
out as one row per treatment arm.

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

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Literal

import pandas as pd

from assets.experiments.analysis_inputs import MetricType, metric_type, planned_units, units_table
from assets.experiments.comparison import ArmComparison, Verdict, compare_arm
from assets.experiments.cuped import cuped_outcome
from assets.experiments.plan import Correction, check_weights, comparison_alpha
from assets.experiments.srm import SRM_THRESHOLD, SrmResult, srm_check
from assets.experiments.two_sample import MIN_UNITS

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
    table = units_table(units, arm_column, outcome_column, covariate_column)
    kind = metric_type(table[outcome_column], metric)
    srm = srm_check(table[arm_column].value_counts().to_dict(), shares, srm_threshold)
    per_test_alpha = comparison_alpha(alpha, len(treatments), correction)
    planned = planned_units(planned_n, list(shares))
    outcome = table[outcome_column].to_numpy()
    analysed, theta = cuped_outcome(outcome, table[covariate_column] if covariate_column else None)
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
        comparisons.append(compare_arm(base, raw, adjusted, kind, srm.flagged, higher_is_better))
    return ExperimentAnalysis(srm, kind, theta, comparisons)
