"""The experiment readout (plan, verdicts, tables) from a per-unit table, without Dagster."""

import numpy as np
import pandas as pd
import pytest

from assets.experiments.readout import (
    exclusions,
    interval_table,
    read_out,
    split_table,
    verdict_line,
)
from assets.experiments.units import ExperimentUnits
from tests.unit.test_simulated_experiment import EXPERIMENT, WEIGHTS


def _units(n: int, lift: float, pre_period: bool, seed: int = 0) -> pd.DataFrame:
    """``n`` units per arm: click-through rate ~0.1, treatment multiplied by ``1 + lift``."""
    rng = np.random.default_rng(seed)
    propensity = rng.beta(2, 18, 2 * n)
    arm = np.array(["control"] * n + ["treatment"] * n)
    rate = propensity * np.where(arm == "treatment", 1 + lift, 1.0)
    outcome = rng.binomial(20, np.clip(rate, 0, 1)) / 20
    covariate = rng.binomial(20, propensity) / 20 if pre_period else np.full(2 * n, np.nan)
    return pd.DataFrame(
        {
            "unit": [str(i) for i in range(2 * n)],
            "arm": arm,
            "outcome": outcome,
            "covariate": covariate,
        }
    )


def test_a_plan_from_the_pre_period_and_cuped_on() -> None:
    readout = read_out(EXPERIMENT, _units(200, 0.0, pre_period=True), WEIGHTS)

    assert readout.plan is not None and readout.baseline_source == "pre-period"
    assert readout.planned_units == readout.plan.units and set(readout.planned_units) == set(
        WEIGHTS
    )
    assert isinstance(readout.cuped_theta, float) and readout.cuped_theta > 0
    assert 0 < readout.variance_reduction < 1
    assert readout.plan_summary == {
        "plan_baseline_mean": readout.plan.baseline,
        "plan_mde": readout.plan.mde,
    }
    assert list(readout.frame["arm"]) == ["treatment"]
    assert readout.frame["planned_n"].iloc[0] == readout.plan.units["treatment"]
    # 200 units per arm are far below what a 20% lift on a ~10% rate needs
    assert readout.verdict == "insufficient_sample"


def test_without_a_plan_the_verdicts_are_held() -> None:
    units = pd.DataFrame(
        {
            "arm": ["control"] * 50 + ["treatment"] * 50,
            "outcome": [0.0] * 50 + [1.0] * 50,  # a control mean of 0 gives no baseline
            "covariate": [np.nan] * 100,
        }
    )
    readout = read_out(EXPERIMENT, units, WEIGHTS)

    assert readout.plan is None and "no pre-period" in readout.baseline_source
    assert readout.planned_units == {} and readout.plan_summary == {}
    assert readout.cuped_theta == "off"
    # the difference is overwhelming, but with no plan no winner may be named
    assert readout.analysis.verdicts == {"treatment": "insufficient_sample"}
    assert readout.frame["planned_n"].isna().all()


def test_verdict_line_names_the_arm_only_when_there_are_several() -> None:
    assert verdict_line({"treatment": "treatment_wins"}) == "treatment_wins"
    assert (
        verdict_line({"b": "control_wins", "c": "insufficient_sample"})
        == "b: control_wins, c: insufficient_sample"
    )


def test_interval_table_formats_units_and_intervals() -> None:
    readout = read_out(EXPERIMENT, _units(200, 0.3, pre_period=True), WEIGHTS)
    table = interval_table(readout.frame)
    row = readout.frame.iloc[0]

    assert list(table.columns) == [
        "arm", "units", "control units", "mean", "control mean", "diff", "diff CI", "lift",
        "lift CI", "p", "test", "verdict",
    ]  # fmt: skip
    assert table["units"].iloc[0] == f"{row['n']} / {row['planned_n']}"
    assert table["diff CI"].iloc[0] == f"[{row['ci_low']:+.4g}, {row['ci_high']:+.4g}]"
    assert table["lift"].iloc[0] == f"{row['relative_lift']:+.2%}"
    assert table["lift CI"].iloc[0].startswith("[") and table["lift CI"].iloc[0].endswith("%]")

    undefined = readout.frame.assign(relative_lift=np.nan, relative_ci_low=np.nan)
    assert interval_table(undefined)[["lift", "lift CI"]].iloc[0].tolist() == ["-", "-"]


def test_split_table_shows_observed_expected_and_weight() -> None:
    units = _units(200, 0.0, pre_period=True)
    readout = read_out(EXPERIMENT, units.iloc[:380], WEIGHTS)  # 200 control, 180 treatment
    table = split_table(readout.analysis.srm, WEIGHTS)

    assert table.to_dict("list") == {
        "arm": ["control", "treatment"],
        "units": [200, 180],
        "expected": [190.0, 190.0],
        "weight": [0.5, 0.5],
    }


def test_exclusions_count_what_was_left_out() -> None:
    table = pd.DataFrame(
        {"unit": ["1", "2", "3"], "arm": ["control", "treatment", "control"]}
    ).assign(outcome=[0.1, np.nan, 0.2], covariate=np.nan)
    units = ExperimentUnits(
        table, "rate", mixed_units=["7", "9"], foreign_requests=3, unassigned_requests=1
    )

    assert exclusions(units) == {
        "excluded/mixed_arm_units": 2,
        "excluded/mixed_arm_examples": "7, 9",
        "excluded/units_without_outcome": 1,
        "excluded/requests_in_other_arms": 3,
        "excluded/requests_without_unit_or_arm": 1,
    }
    assert (
        exclusions(ExperimentUnits(table.iloc[:1], "rate"))["excluded/mixed_arm_examples"] == "none"
    )


@pytest.mark.parametrize("outcome", ["rate", "conversion"])
def test_the_outcome_decides_the_test(outcome: str) -> None:
    units = _units(100, 0.0, pre_period=False)
    if outcome == "conversion":
        units["outcome"] = (units["outcome"] > 0.1).astype(float)
    readout = read_out(EXPERIMENT, units, WEIGHTS, outcome)
    assert readout.analysis.metric == ("binary" if outcome == "conversion" else "continuous")
