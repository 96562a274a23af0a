"""A/B-test planning and analysis: against statsmodels/scipy, a textbook value and simulations."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats
from statsmodels.stats.power import NormalIndPower, TTestIndPower
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_effectsize,
    proportions_ztest,
)

from assets.experiments.analysis import analyze_experiment
from assets.experiments.plan import (
    check_weights,
    minimum_detectable_effect,
    plan_experiment,
    plan_mde,
    plan_sample_size,
    sample_size,
)
from assets.experiments.srm import srm_check
from assets.experiments.two_sample import proportion_test, welch_test
from configs.schema.stages import ExperimentSpec

HALF = {"control": 0.5, "treatment": 0.5}


def _binary_units(n: int, rates: dict[str, float], seed: int) -> pd.DataFrame:
    """``n`` units per arm whose outcome is 1 with the arm's rate."""
    rng = np.random.default_rng(seed)
    arms = np.repeat(list(rates), n)
    rate = np.repeat(list(rates.values()), n)
    return pd.DataFrame({"arm": arms, "outcome": (rng.random(len(arms)) < rate).astype(int)})


def _continuous_units(n: int, effect: float, seed: int, noise: float = 1.0) -> pd.DataFrame:
    """Outcome = pre-period value (sd 2) + ``effect`` in treatment + noise: corr(y, x)^2 = 0.8."""
    rng = np.random.default_rng(seed)
    arms = np.repeat(["control", "treatment"], n)
    pre = rng.normal(10, 2, len(arms))
    outcome = pre + effect * (arms == "treatment") + rng.normal(0, noise, len(arms))
    return pd.DataFrame({"arm": arms, "outcome": outcome, "pre": pre})


# ----------------------------------------------------------------------------- planning


def test_sample_size_textbook_value() -> None:
    # 10% -> 11%: Cohen's h = 2 asin(sqrt(.11)) - 2 asin(sqrt(.10)) = 0.032629; per arm
    # n = 2 (z_.975 + z_.8)^2 / h^2 = 2 (1.959964 + 0.841621)^2 / 0.032629^2 = 14,744.1 -> 14,745.
    # (The pooled-variance formula of Fleiss gives 14,751, the "~14,750" of online calculators.)
    h = 2 * math.asin(math.sqrt(0.11)) - 2 * math.asin(math.sqrt(0.10))
    assert h == pytest.approx(0.032629, abs=1e-6)
    exact = 2 * (1.959964 + 0.841621) ** 2 / h**2
    assert exact == pytest.approx(14_744.1, abs=0.5)
    assert sample_size(0.10, 0.10, alpha=0.05, power=0.8) == (14_745, 14_745)


@pytest.mark.parametrize(
    ("baseline", "mde", "alpha", "power", "ratio"),
    [(0.05, 0.05, 0.05, 0.8, 1.0), (0.2, 0.1, 0.01, 0.9, 1.0), (0.1, 0.1, 0.05, 0.8, 0.5)],
)
def test_sample_size_matches_statsmodels(
    baseline: float, mde: float, alpha: float, power: float, ratio: float
) -> None:
    h = proportion_effectsize(baseline * (1 + mde), baseline)
    n1 = NormalIndPower().solve_power(h, alpha=alpha, power=power, ratio=ratio)
    control, treatment = sample_size(baseline, mde, alpha=alpha, power=power, ratio=ratio)
    assert control == math.ceil(n1)
    assert treatment == math.ceil(n1 * ratio - 1e-6)


def test_continuous_sample_size_matches_ttest_power() -> None:
    n1 = TTestIndPower().solve_power(effect_size=0.5 / 5, alpha=0.05, power=0.8, ratio=1)
    assert sample_size(10.0, 0.05, sd=5.0) == (math.ceil(n1), math.ceil(n1))


@pytest.mark.parametrize("sd", [None, 5.0])
def test_mde_inverts_sample_size(sd: float | None) -> None:
    baseline = 0.08 if sd is None else 10.0
    control, _ = sample_size(baseline, 0.07, sd=sd, ratio=2.0)
    mde = minimum_detectable_effect(baseline, control, sd=sd, ratio=2.0)
    assert mde == pytest.approx(0.07, rel=1e-3)
    assert mde <= 0.07 * (1 + 1e-4)  # units were rounded up (up to the solver's tolerance)


def test_multi_arm_plan_uses_weights_and_bonferroni() -> None:
    weights = {"control": 0.5, "a": 0.25, "b": 0.25}
    plan = plan_sample_size(weights, 0.1, 0.1)
    h = proportion_effectsize(0.11, 0.10)
    n1 = NormalIndPower().solve_power(h, alpha=0.025, power=0.8, ratio=0.5)
    assert plan.comparison_alpha == 0.025
    assert plan.units == {"control": math.ceil(n1), "a": math.ceil(n1 / 2), "b": math.ceil(n1 / 2)}
    inverse = plan_mde(weights, 0.1, plan.total)
    assert inverse.mde == pytest.approx(0.1, rel=1e-3)
    unadjusted = plan_sample_size(weights, 0.1, 0.1, correction="none")
    assert unadjusted.total < plan.total


def test_plan_from_experiment_section() -> None:
    experiment = ExperimentSpec(
        name="ranker_v2",
        unit="user_id",
        metric="click",
        arms=[{"name": "control", "weight": 0.5}, {"name": "treatment", "weight": 0.5}],
        minimum_detectable_effect=0.1,
    )
    assert plan_experiment(experiment, 0.10).units == {"control": 14_745, "treatment": 14_745}
    assert plan_experiment(experiment, 0.10, total=29_490).mde == pytest.approx(0.1, rel=1e-3)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: sample_size(1.2, 0.1), "in \\(0, 1\\)"),
        (lambda: sample_size(0.1, 0.1, alpha=1.5), "alpha"),
        (lambda: sample_size(0.1, -0.1), "positive lift"),
        (lambda: sample_size(0.6, 0.9), "cannot exceed 100%"),
        (lambda: sample_size(0.0001, 0.1, sd=0.0), "sd"),
        (lambda: minimum_detectable_effect(0.5, 1), "at least 2 units"),
        (lambda: minimum_detectable_effect(0.5, 3), "too few units"),
        (lambda: plan_sample_size({"control": 0.5, "t": 0.6}, 0.1, 0.1), "sum to 1"),
        (lambda: plan_sample_size({"control": 1.0}, 0.1, 0.1), "two arms"),
        (lambda: check_weights({"control": 1.5, "t": -0.5}), "positive"),
    ],
)
def test_plan_rejects_bad_input(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


# ----------------------------------------------------------------------------- tests


def test_z_test_matches_statsmodels() -> None:
    result = proportion_test(580, 5000, 500, 5000, alpha=0.05)
    statistic, p_value = proportions_ztest([580, 500], [5000, 5000])
    low, high = confint_proportions_2indep(580, 5000, 500, 5000, method="wald", compare="diff")
    assert (result.statistic, result.p_value) == pytest.approx((statistic, p_value))
    assert (result.ci_low, result.ci_high) == pytest.approx((low, high))
    assert result.diff == pytest.approx(0.016)

    units = _binary_units(5000, {"control": 0.10, "treatment": 0.115}, seed=1)
    (row,) = analyze_experiment(units, HALF, planned_n=None).comparisons
    x = units.groupby("arm").outcome.sum()
    assert row.test == "z_test"
    assert row.p_value == pytest.approx(
        proportions_ztest([x["treatment"], x["control"]], [5000, 5000])[1]
    )
    assert row.relative_lift == pytest.approx(row.diff / row.mean_control)
    assert row.relative_ci_low < row.relative_lift < row.relative_ci_high


def test_welch_matches_scipy() -> None:
    rng = np.random.default_rng(2)
    treatment, control = rng.normal(1.2, 3.0, 400), rng.normal(1.0, 1.0, 900)
    result = welch_test(treatment, control, alpha=0.1)
    reference = scipy_stats.ttest_ind(treatment, control, equal_var=False)
    interval = reference.confidence_interval(0.9)
    assert (result.statistic, result.p_value) == pytest.approx(
        (reference.statistic, reference.pvalue)
    )
    assert (result.ci_low, result.ci_high) == pytest.approx((interval.low, interval.high))


def test_srm_flags_52_48_at_large_n_but_not_a_fair_split() -> None:
    assert srm_check({"control": 52_000, "treatment": 48_000}, HALF).flagged
    fair = np.random.default_rng(3).binomial(100_000, 0.5)
    result = srm_check({"control": fair, "treatment": 100_000 - fair}, HALF)
    assert not result.flagged and result.p_value > 0.001
    assert not srm_check({"control": 520, "treatment": 480}, HALF).flagged  # too few to tell
    assert srm_check({"control": 500}, HALF).flagged  # a dead arm
    assert not srm_check({"control": 66_700, "t": 33_300}, {"control": 2 / 3, "t": 1 / 3}).flagged


# ----------------------------------------------------------------------------- CUPED


def test_cuped_reduces_variance_and_stays_unbiased() -> None:
    effect, estimates, covered, reductions = 0.1, [], 0, []
    for seed in range(60):
        units = _continuous_units(1000, effect, seed)
        (cuped,) = analyze_experiment(
            units, HALF, planned_n=None, covariate_column="pre"
        ).comparisons
        (raw,) = analyze_experiment(units, HALF, planned_n=None).comparisons
        assert cuped.cuped and cuped.test == "welch_cuped" and not raw.cuped
        assert cuped.ci_high - cuped.ci_low < 0.6 * (raw.ci_high - raw.ci_low)
        estimates.append(cuped.diff)
        covered += cuped.ci_low <= effect <= cuped.ci_high
        reductions.append(cuped.variance_reduction)
    # corr(y, x)^2 = 4 / (4 + 1): CUPED removes about 80% of the variance
    assert np.mean(reductions) == pytest.approx(0.8, abs=0.03)
    # unbiased: the mean estimate is within 3 standard errors of the truth, and 95% CIs cover it
    se = np.std(estimates, ddof=1) / math.sqrt(len(estimates))
    assert abs(np.mean(estimates) - effect) < 3 * se
    assert covered / 60 >= 0.88


def test_cuped_with_a_useless_or_partial_covariate() -> None:
    units = _continuous_units(500, 0.0, seed=4)
    constant = units.assign(pre=1.0)
    analysis = analyze_experiment(constant, HALF, planned_n=None, covariate_column="pre")
    assert analysis.theta is None and not analysis.comparisons[0].cuped
    partial = units.assign(pre=units.pre.where(units.index % 3 != 0))  # a third have no history
    (row,) = analyze_experiment(partial, HALF, planned_n=None, covariate_column="pre").comparisons
    assert row.cuped and 0.3 < row.variance_reduction < 0.8


# ----------------------------------------------------------------------------- verdicts


def test_planned_effect_is_detected_at_the_planned_power() -> None:
    plan = plan_sample_size(HALF, 0.10, 0.10)
    wins = 0
    for seed in range(30):
        units = _binary_units(plan.units["control"], {"control": 0.10, "treatment": 0.11}, seed)
        wins += analyze_experiment(units, HALF, planned_n=plan.units).verdicts["treatment"] == (
            "treatment_wins"
        )
    assert 0.6 <= wins / 30 <= 0.97  # 80% power


def test_null_effect_false_positive_rate() -> None:
    verdicts = [
        analyze_experiment(
            _binary_units(2000, {"control": 0.1, "treatment": 0.1}, seed), HALF, planned_n=2000
        ).verdicts["treatment"]
        for seed in range(200)
    ]
    false_positives = sum(v in ("treatment_wins", "control_wins") for v in verdicts) / 200
    assert false_positives <= 0.09
    assert set(verdicts) <= {"no_significant_difference", "treatment_wins", "control_wins"}


def test_verdict_refuses_before_the_planned_sample() -> None:
    units = _binary_units(3000, {"control": 0.10, "treatment": 0.20}, seed=5)
    early = analyze_experiment(units, HALF, planned_n={"control": 3000, "treatment": 3001})
    (row,) = early.comparisons
    assert row.p_value < 1e-10 and row.verdict == "insufficient_sample"
    assert analyze_experiment(units, HALF, planned_n=3000).verdicts == {
        "treatment": "treatment_wins"
    }
    worse = analyze_experiment(units, HALF, planned_n=3000, higher_is_better=False)
    assert worse.verdicts == {"treatment": "control_wins"}


def test_srm_overrides_the_verdict() -> None:
    units = _binary_units(3000, {"control": 0.10, "treatment": 0.20}, seed=6)
    units = units.drop(units.index[(units.arm == "treatment")][:500])  # a leaky treatment arm
    analysis = analyze_experiment(units, HALF, planned_n=2000)
    assert analysis.srm.flagged and analysis.verdicts == {"treatment": "srm"}


def test_multiple_arms_against_the_control_with_bonferroni() -> None:
    weights = {"control": 0.5, "same": 0.25, "better": 0.25}
    rng = np.random.default_rng(7)
    arms = rng.choice(list(weights), 20_000, p=list(weights.values()))
    rate = pd.Series(arms).map({"control": 0.1, "same": 0.1, "better": 0.15}).to_numpy()
    units = pd.DataFrame({"arm": arms, "outcome": (rng.random(len(arms)) < rate).astype(int)})
    frame = analyze_experiment(units, weights, planned_n=1000).to_frame().set_index("arm")
    assert list(frame.index) == ["same", "better"]
    assert (frame.alpha == 0.025).all() and (frame.control == "control").all()
    assert frame.loc["better", "verdict"] == "treatment_wins"
    assert frame.loc["same", "verdict"] == "no_significant_difference"
    assert frame.loc["same", "ci_low"] < 0 < frame.loc["same", "ci_high"]


# ----------------------------------------------------------------------------- bad input


def test_degenerate_input_gives_defined_results() -> None:
    units = _binary_units(100, {"control": 0.1, "treatment": 0.1}, seed=8)
    flat = units.assign(outcome=0)
    (row,) = analyze_experiment(flat, HALF, planned_n=None).comparisons
    assert (row.diff, row.p_value, row.verdict) == (0.0, 1.0, "no_significant_difference")
    assert row.relative_lift is None  # a control mean of 0 has no relative lift
    split = flat.assign(outcome=(flat.arm == "treatment").astype(float) + 2.5)
    (row,) = analyze_experiment(split, HALF, planned_n=None).comparisons
    assert (row.diff, row.p_value, row.verdict) == (1.0, 0.0, "treatment_wins")

    # an arm with no units: a broken split, statistics left empty, never NaN verdicts
    lone = units[units.arm == "control"]
    analysis = analyze_experiment(lone, HALF, planned_n=None)
    assert analysis.verdicts == {"treatment": "srm"} and analysis.comparisons[0].n == 0
    few = pd.concat([lone.head(3), units[units.arm == "treatment"].head(1)])
    assert analyze_experiment(few, HALF, planned_n=None).verdicts == {
        "treatment": "insufficient_sample"
    }
    frame = analyze_experiment(lone, HALF, planned_n=None).to_frame()
    assert frame.verdict.notna().all() and math.isnan(frame.p_value.iloc[0])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda u: u.drop(columns="outcome"), "missing column"),
        (lambda u: u.assign(arm=u.arm.replace("treatment", "b")), "does not have"),
        (lambda u: u.assign(outcome=u.outcome.where(u.index > 0)), "missing or infinite"),
        (lambda u: u.assign(outcome="yes"), "numeric"),
    ],
)
def test_bad_units_table_is_a_clear_error(change, message: str) -> None:
    units = _binary_units(50, {"control": 0.1, "treatment": 0.1}, seed=9)
    with pytest.raises(ValueError, match=message):
        analyze_experiment(change(units), HALF, planned_n=None)


def test_bad_design_is_a_clear_error() -> None:
    units = _binary_units(50, {"control": 0.1, "treatment": 0.1}, seed=10)
    with pytest.raises(ValueError, match="sum to 1"):
        analyze_experiment(units, {"control": 0.5, "treatment": 0.4}, planned_n=None)
    with pytest.raises(ValueError, match="covariate|missing column"):
        analyze_experiment(units, HALF, planned_n=None, covariate_column="pre")
    with pytest.raises(ValueError, match="planned_n"):
        analyze_experiment(units, HALF, planned_n={"control": 10})
    with pytest.raises(ValueError, match="binary"):
        analyze_experiment(units.assign(outcome=2.0), HALF, planned_n=None, metric="binary")
