"""Guardrail statistics: the always-valid test under repeated looks, the non-inferiority tests
against statsmodels, Holm, the decision rules, the plan and the config section."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError
from statsmodels.stats.power import NormalIndPower, TTestIndPower
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW, ttest_ind

from assets.experiments.comparison import ArmComparison
from assets.experiments.decision import JudgedGuardrail, decide, judge_guardrails, unavailable
from assets.experiments.guardrail_plan import binding, guardrail_power, plan_guardrail
from assets.experiments.guardrails import (
    MIN_SEQUENTIAL_UNITS,
    GuardrailTest,
    mean_guardrail,
    quantile_guardrail,
)
from assets.experiments.sequential import always_valid_p_value, confidence_radius
from configs.schema.guardrails import GuardrailSpec
from configs.schema.stages import ExperimentSpec

NAMES = {"guardrail": "g", "metric": "m", "arm": "treatment", "control": "control"}
HALF = {"control": 0.5, "treatment": 0.5}


# ----------------------------------------------------------------------------- always valid


def test_the_always_valid_test_keeps_its_error_over_a_hundred_looks() -> None:
    """No effect, 100 looks per path: the mSPRT rejects on at most alpha of the paths; a fixed
    z test repeated at every look rejects on far more (the reason for the mSPRT)."""
    alpha, tau, paths = 0.05, 0.2, 4000
    rng = np.random.default_rng(0)
    looks = np.arange(50, 5001, 50)
    steps = rng.normal(0.0, 1.0, (paths, looks[-1]))
    means = np.cumsum(steps, axis=1)[:, looks - 1] / looks  # estimate at each look, sd 1/sqrt(n)
    radius = np.array([confidence_radius(1 / n, tau, alpha) for n in looks])
    sequential = (np.abs(means) >= radius).any(axis=1).mean()
    naive = (np.abs(means) >= 1.96 / np.sqrt(looks)).any(axis=1).mean()
    assert sequential <= alpha
    assert naive > 3 * alpha
    # the p-value and the radius are the same test
    n = looks[10]
    for gap in (0.5 * radius[10], 1.01 * radius[10]):
        assert (always_valid_p_value(gap, 0.0, 1 / n, tau) <= alpha) == (gap >= radius[10])


def test_the_always_valid_test_finds_a_real_effect() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(0.3, 1.0, 2000)
    assert always_valid_p_value(float(x.mean()), 0.0, 1 / len(x), 0.3) < 1e-6
    assert always_valid_p_value(0.0, 0.0, 0.0, 1.0) == 1.0
    assert always_valid_p_value(0.1, 0.0, 0.0, 1.0) == 0.0
    with pytest.raises(ValueError, match="tau"):
        always_valid_p_value(0.1, 0.0, 0.1, 0.0)


# ----------------------------------------------------------------------------- mean guardrails


def test_relative_non_inferiority_is_welchs_test_of_the_scaled_control() -> None:
    rng = np.random.default_rng(2)
    treatment, control = rng.gamma(2.0, 5.0, 800), rng.gamma(2.0, 5.0, 900)
    margin = 0.1
    result = mean_guardrail(
        treatment, control, margin=margin, relative=True, higher_is_better=False,
        ni_alpha=0.05, harm_alpha=0.05, names=NAMES,
    )  # fmt: skip
    expected = ttest_ind(
        treatment, (1 + margin) * control, alternative="smaller", usevar="unequal"
    )[1]
    assert result.ni_p_value == pytest.approx(expected)
    assert result.degradation == pytest.approx(treatment.mean() / control.mean() - 1)
    # the bound is the inverted test: at the bound, the test is exactly at alpha
    at_bound = ttest_ind(
        treatment, (1 + result.ni_bound) * control, alternative="smaller", usevar="unequal"
    )[1]
    assert at_bound == pytest.approx(0.05, abs=1e-6)
    assert result.harm_bound < result.degradation < result.ni_bound
    assert result.sd_per_unit == pytest.approx(control.std(ddof=1) / control.mean())


def test_absolute_non_inferiority_matches_statsmodels_interval_when_higher_is_better() -> None:
    rng = np.random.default_rng(3)
    treatment, control = rng.binomial(1, 0.30, 1500), rng.binomial(1, 0.31, 1500)
    result = mean_guardrail(
        treatment.astype(float), control.astype(float), margin=0.05, relative=False,
        higher_is_better=True, ni_alpha=0.05, harm_alpha=0.05, names=NAMES,
    )  # fmt: skip
    # degradation = control - treatment; its upper bound is minus the lower bound of t - c
    low, _ = CompareMeans(DescrStatsW(treatment), DescrStatsW(control)).tconfint_diff(
        alpha=0.05, alternative="larger", usevar="unequal"
    )
    assert result.ni_bound == pytest.approx(-low, abs=1e-6)
    expected = ttest_ind(treatment, control, alternative="larger", usevar="unequal", value=-0.05)[1]
    assert result.ni_p_value == pytest.approx(expected)
    assert result.ni_p_value < 0.05  # 1 point worse at most, against a 5-point margin


def test_too_few_units_are_not_tested_and_constant_outcomes_are_exact() -> None:
    few = mean_guardrail(
        np.ones(MIN_SEQUENTIAL_UNITS - 1), np.ones(100), margin=0.1, relative=True,
        higher_is_better=True, ni_alpha=0.05, harm_alpha=0.05, names=NAMES,
    )  # fmt: skip
    assert few.n == MIN_SEQUENTIAL_UNITS - 1 and few.ni_p_value is None and few.degradation is None
    same = mean_guardrail(
        np.zeros(50), np.zeros(50), margin=0.01, relative=False, higher_is_better=False,
        ni_alpha=0.05, harm_alpha=0.05, names=NAMES,
    )  # fmt: skip
    assert same.degradation == 0 and same.ni_p_value == 0.0 and same.harm_p_value == 1.0
    zero_control = mean_guardrail(
        np.full(50, 0.1), np.zeros(50), margin=0.1, relative=True, higher_is_better=False,
        ni_alpha=0.05, harm_alpha=0.05, names=NAMES,
    )  # fmt: skip
    assert zero_control.degradation is None and zero_control.ni_bound is None


# ----------------------------------------------------------------------------- latency quantile


def _requests(n_units: int, scale: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    units = np.repeat(np.arange(n_units), 1 + rng.poisson(3, n_units))
    return scale * rng.lognormal(np.log(30.0), 0.4, len(units)), units.astype(str)


def test_the_quantile_is_numpys_and_the_bootstrap_is_reproducible() -> None:
    treatment, control = _requests(400, 1.2, 0), _requests(500, 1.0, 1)
    kwargs = {
        "quantile": 0.99, "margin": 0.05, "relative": True, "higher_is_better": False,
        "ni_alpha": 0.05, "harm_alpha": 0.05, "names": NAMES, "resamples": 500,
    }  # fmt: skip
    result = quantile_guardrail(treatment, control, **kwargs)
    p99 = [np.quantile(t[0], 0.99, method="inverted_cdf") for t in (treatment, control)]
    assert (result.value, result.value_control) == (p99[0], p99[1])
    assert result.degradation == pytest.approx(p99[0] / p99[1] - 1)
    assert (result.n, result.n_control) == (400, 500)
    assert result.test == "unit_bootstrap_p99"
    assert quantile_guardrail(treatment, control, **kwargs) == result
    assert result.harm_bound < result.degradation < result.ni_bound
    assert result.ni_p_value > 0.05  # 20% slower is not within 5%
    absolute = quantile_guardrail(treatment, control, **{**kwargs, "relative": False})
    assert absolute.degradation == pytest.approx(p99[0] - p99[1])


# ----------------------------------------------------------------------------- judging, deciding


def _test(arm: str = "treatment", harm: float | None = 0.5, ni: float | None = 0.5, **kw):
    fields = {
        "guardrail": "g", "metric": "m", "arm": arm, "control": "control", "test": "t",
        "higher_is_better": False, "relative": True, "margin": 0.1, "n": 100, "n_control": 100,
        "degradation": 0.0, "harm_p_value": harm, "ni_p_value": ni, **kw,
    }  # fmt: skip
    return GuardrailTest(**fields)


def test_holm_corrects_the_harm_tests_and_non_inferiority_waits_for_the_plan() -> None:
    tests = [_test(guardrail="a", harm=0.02), _test(guardrail="b", harm=0.03)]
    judged = judge_guardrails(tests, alpha=0.05, ni_alpha=0.05, reached={"treatment": False})
    assert [j.harm_p_adjusted for j in judged] == pytest.approx([0.04, 0.04])
    assert [j.status for j in judged] == ["harmful", "harmful"]
    tests = [_test(guardrail="a", harm=0.02), _test(guardrail="b", harm=0.3, ni=0.01)]
    early = judge_guardrails(tests, alpha=0.05, ni_alpha=0.05, reached={"treatment": False})
    assert [j.status for j in early] == ["harmful", "pending"]
    late = judge_guardrails(tests[1:], alpha=0.05, ni_alpha=0.05, reached={"treatment": True})
    assert late[0].status == "non_inferior"
    inconclusive = judge_guardrails(
        [_test(ni=0.2)], alpha=0.05, ni_alpha=0.05, reached={"treatment": True}
    )
    assert inconclusive[0].status == "inconclusive"


def _comparison(verdict: str, p_value: float = 0.01) -> ArmComparison:
    return ArmComparison(
        arm="treatment", control="control", n=100, n_control=100, planned_n=100,
        planned_n_control=100, alpha=0.05, test="welch", cuped=False, verdict=verdict,
        p_value=p_value,
    )  # fmt: skip


def test_the_decision_rules() -> None:
    fine = JudgedGuardrail(_test(), "non_inferior", 0.9)
    harmful = JudgedGuardrail(_test(guardrail="latency_p99", degradation=0.3), "harmful", 0.001)
    pending = JudgedGuardrail(_test(), "pending", 0.9)
    done: dict[str, int] = {"control": 0, "treatment": 0}

    wins = _comparison("treatment_wins")
    assert decide("treatment", wins, [fine], done).verdict == "ship"
    stop = decide("treatment", _comparison("insufficient_sample"), [harmful, pending], None)
    assert (stop.verdict, stop.stop) == ("do_not_ship", True) and "latency_p99" in stop.reason
    assert decide("treatment", _comparison("srm"), [fine], done).reason.startswith("sample-ratio")
    loses = decide("treatment", _comparison("control_wins"), [fine], done)
    assert loses.verdict == "do_not_ship" and loses.stop
    running = decide("treatment", wins, [pending], {"control": 50, "treatment": 0})
    assert running.verdict == "keep_running" and running.units_needed == {"control": 50}
    assert decide("treatment", None, [fine], done).verdict == "keep_running"
    assert "not known" in decide("treatment", wins, [fine], None).reason
    flat = decide("treatment", _comparison("no_significant_difference", 0.4), [fine], done)
    assert (flat.verdict, flat.stop) == (
        "do_not_ship",
        False,
    ) and "no significant win" in flat.reason
    blind = unavailable(_test(harm=None, ni=None), "no 'error' column")
    blocked = decide("treatment", wins, [fine, blind], done)
    assert blocked.verdict == "do_not_ship" and "unavailable" in blocked.reason


# ----------------------------------------------------------------------------- plan


def test_a_guardrail_plan_is_statsmodels_one_sided_power_with_beta_shared() -> None:
    plan = plan_guardrail(
        HALF, guardrail="purchase", kind="mean", margin=0.05, relative=True, sd_per_unit=1.5,
        alpha=0.05, power=0.8, guardrails=2,
    )  # fmt: skip
    assert plan.power == pytest.approx(0.9) == guardrail_power(0.8, 2)
    expected = TTestIndPower().solve_power(
        effect_size=0.05 / 1.5, alpha=0.05, power=0.9, ratio=1.0, alternative="larger"
    )
    assert plan.units == {"control": math.ceil(expected), "treatment": math.ceil(expected)}
    latency = plan_guardrail(
        {"control": 0.8, "treatment": 0.2}, guardrail="latency_p99", kind="quantile",
        margin=0.1, relative=True, sd_per_unit=0.7,
    )  # fmt: skip
    n_control = NormalIndPower().solve_power(
        effect_size=0.1 / 0.7, alpha=0.05, power=0.8, ratio=0.25, alternative="larger"
    )
    assert latency.units["control"] == math.ceil(n_control - 1e-9)
    assert latency.units["treatment"] == math.ceil(n_control / 0.8 * 0.2 - 1e-9)
    assert (
        binding({"control": 10, "treatment": 10}, [plan, latency])[0]
        == max((plan, latency), key=lambda p: p.total).guardrail
    )
    assert binding(None, []) == ("none", {})
    with pytest.raises(ValueError, match="spread per unit"):
        plan_guardrail(HALF, guardrail="g", kind="mean", margin=0.1, relative=True, sd_per_unit=0)


# ----------------------------------------------------------------------------- config


def test_the_guardrail_section_validates() -> None:
    latency = GuardrailSpec(metric="latency_p99", max_degradation=0.1)
    assert (latency.kind, latency.direction_higher, latency.label) == (
        "latency",
        False,
        "latency_p99",
    )
    label = GuardrailSpec(metric="purchase", max_degradation=0.05, name="buys")
    assert (label.kind, label.direction_higher, label.label) == ("label", True, "buys")
    assert (
        GuardrailSpec(metric="error_rate", max_degradation=0.01, relative=False).kind
        == "error_rate"
    )
    with pytest.raises(ValidationError, match="latency_p<q>"):
        GuardrailSpec(metric="latency_99", max_degradation=0.1)
    with pytest.raises(ValidationError, match="greater than 0"):
        GuardrailSpec(metric="purchase", max_degradation=0)
    with pytest.raises(ValidationError, match="allows any value"):
        GuardrailSpec(metric="purchase", max_degradation=1.0)
    arms = [{"name": "a", "weight": 0.5}, {"name": "b", "weight": 0.5}]
    with pytest.raises(ValidationError, match="guardrail names must be distinct"):
        ExperimentSpec(
            name="x", unit="u", metric="click", arms=arms,
            guardrails=[{"metric": "purchase", "max_degradation": 0.1}] * 2,
        )  # fmt: skip
