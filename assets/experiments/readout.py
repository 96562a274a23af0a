"""The running A/B test's readout from its units: plan, analysis, verdicts and the tables shown.

Plain functions, no Dagster: ``experiment_analysis_assets`` reads the request log and the raw
events, builds the units (:func:`assets.experiments.units.experiment_units`) and hands them here;
what comes back is the comparison table and the values its metadata shows. Keeping the decisions
(where the baseline comes from, when a verdict must wait) out of the asset lets a simulated
experiment exercise them without materializing anything. The statistics themselves are
:func:`assets.experiments.analysis.analyze_experiment`'s.
"""

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from assets.experiments.analysis import ExperimentAnalysis, analyze_experiment
from assets.experiments.plan import ExperimentPlan, plan_experiment
from assets.experiments.srm import SrmResult
from assets.experiments.units import ExperimentUnits, Outcome
from configs.schema.stages import ExperimentSpec

# Per-unit click-through rate since exposure: a ratio per unit, tested with Welch's t test.
OUTCOME: Outcome = "rate"


def plan_from_units(
    experiment: ExperimentSpec, units: pd.DataFrame, outcome: Outcome = OUTCOME
) -> tuple[ExperimentPlan | None, str]:
    """The sample-size plan and where its baseline came from (or why there is no plan).

    The baseline is the metric's mean and standard deviation over the units' pre-periods (fixed
    before the test, so peeking at the result cannot move it), else over the control arm.
    """
    control = experiment.arms[0].name
    sources = (
        ("pre-period", units["covariate"].dropna()),
        (f"control arm {control!r}", units.loc[units["arm"] == control, "outcome"].dropna()),
    )
    for source, values in sources:
        if len(values) < 2:
            continue
        mean, sd = float(values.mean()), float(values.std(ddof=1))
        if outcome == "conversion":
            if not 0 < mean < 1:
                continue
            sd_or_none = None
        else:
            if mean == 0 or not sd > 0:
                continue
            sd_or_none = sd
        try:
            return plan_experiment(experiment, mean, sd=sd_or_none), source
        except ValueError as error:
            return None, f"{source}: {error}"
    return None, "no pre-period or control outcomes to estimate a baseline from"


def hold_verdicts(analysis: ExperimentAnalysis) -> ExperimentAnalysis:
    """Without a plan the units needed are unknown, so no arm may be called a winner yet."""
    comparisons = [
        c if c.verdict == "srm" else replace(c, verdict="insufficient_sample")
        for c in analysis.comparisons
    ]
    return replace(analysis, comparisons=comparisons)


@dataclass(frozen=True)
class ExperimentReadout:
    """One look at the test: the analysis, its table, and the plan it was judged against."""

    analysis: ExperimentAnalysis
    frame: pd.DataFrame  # analysis.to_frame(): one row per treatment arm
    plan: ExperimentPlan | None
    baseline_source: str  # where the plan's baseline came from, or why there is no plan

    @property
    def verdict(self) -> str:
        """One line for the UI (see :func:`verdict_line`)."""
        return verdict_line(self.analysis.verdicts)

    @property
    def planned_units(self) -> dict[str, int]:
        """Units each arm must reach before a winner is named; empty without a plan."""
        return dict(self.plan.units) if self.plan else {}

    @property
    def plan_summary(self) -> dict[str, float]:
        """The plan's baseline mean and detectable lift; empty without a plan."""
        return (
            {"plan_baseline_mean": self.plan.baseline, "plan_mde": self.plan.mde}
            if self.plan
            else {}
        )

    @property
    def cuped_theta(self) -> float | str:
        """CUPED's theta, or ``"off"`` when no unit had a pre-period to adjust with."""
        theta = self.analysis.theta
        return float(theta) if theta is not None else "off"

    @property
    def variance_reduction(self) -> float:
        """The largest share of variance CUPED removed over the comparisons."""
        return float(self.frame["variance_reduction"].max())


def read_out(
    experiment: ExperimentSpec,
    units: pd.DataFrame,
    weights: Mapping[str, float],
    outcome: Outcome = OUTCOME,
) -> ExperimentReadout:
    """Plan from the units' baseline, analyse them, and hold every verdict when there is no plan.

    ``units`` are the analysable rows of :class:`assets.experiments.units.ExperimentUnits` (one
    per unit with an outcome). CUPED is on when any unit has a pre-period value.
    """
    plan, baseline_source = plan_from_units(experiment, units, outcome)
    has_covariate = bool(units["covariate"].notna().any())
    analysis = analyze_experiment(
        units,
        weights,
        planned_n=plan.units if plan else None,
        alpha=experiment.alpha,
        metric="binary" if outcome == "conversion" else "continuous",
        higher_is_better=experiment.higher_is_better,
        covariate_column="covariate" if has_covariate else None,
    )
    if plan is None:
        analysis = hold_verdicts(analysis)
    return ExperimentReadout(analysis, analysis.to_frame(), plan, baseline_source)


def verdict_line(verdicts: Mapping[str, str]) -> str:
    """One line for the UI: the verdict of a two-arm test, ``arm: verdict`` pairs otherwise."""
    if len(verdicts) == 1:
        return next(iter(verdicts.values()))
    return ", ".join(f"{arm}: {verdict}" for arm, verdict in verdicts.items())


def _interval(low: float, high: float, percent: bool) -> str:
    if pd.isna(low) or pd.isna(high):
        return "-"
    return f"[{low:+.2%}, {high:+.2%}]" if percent else f"[{low:+.4g}, {high:+.4g}]"


def interval_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The comparison as a reader wants it: arm, means, difference and lift with their CIs.

    ``frame`` is :meth:`ExperimentAnalysis.to_frame`; units are shown as actual / planned so the
    reader sees how far the test is from a verdict.
    """
    return pd.DataFrame(
        {
            "arm": frame["arm"],
            "units": frame["n"].astype(str) + " / " + frame["planned_n"].astype(str),
            "control units": frame["n_control"].astype(str)
            + " / "
            + frame["planned_n_control"].astype(str),
            "mean": frame["mean"],
            "control mean": frame["mean_control"],
            "diff": frame["diff"],
            "diff CI": [
                _interval(lo, hi, False)
                for lo, hi in zip(frame["ci_low"], frame["ci_high"], strict=True)
            ],
            "lift": frame["relative_lift"].map(lambda v: "-" if pd.isna(v) else f"{v:+.2%}"),
            "lift CI": [
                _interval(lo, hi, True)
                for lo, hi in zip(frame["relative_ci_low"], frame["relative_ci_high"], strict=True)
            ],
            "p": frame["p_value"],
            "test": frame["test"],
            "verdict": frame["verdict"],
        }
    )


def split_table(srm: SrmResult, weights: Mapping[str, float]) -> pd.DataFrame:
    """Observed against expected units per arm, with the planned weight: the split check's table."""
    return pd.DataFrame(
        {
            "arm": list(srm.observed),
            "units": list(srm.observed.values()),
            "expected": np.round(list(srm.expected.values()), 1),
            "weight": [weights[a] for a in srm.observed],
        }
    )


def exclusions(units: ExperimentUnits) -> dict[str, int | str]:
    """What was left out of the analysis and why, so a routing bug shows in the metadata."""
    return {
        "excluded/mixed_arm_units": len(units.mixed_units),
        "excluded/mixed_arm_examples": ", ".join(units.mixed_units[:10]) or "none",
        "excluded/units_without_outcome": int(len(units.table) - len(units.analysable)),
        "excluded/requests_in_other_arms": units.foreign_requests,
        "excluded/requests_without_unit_or_arm": units.unassigned_requests,
    }
