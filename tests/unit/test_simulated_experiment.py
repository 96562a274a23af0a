"""A simulated A/B test with a known effect, through the request log, the units and the analysis.

Each simulated user has a click propensity ``p`` (Beta, mean 10%) that drives both the weeks
before the test and the test itself; the service routes users with the real hash, logs one or
more replayed requests (``as_of`` = when each was served) through the real SQLite request log,
and the treatment multiplies ``p`` by ``1 + lift`` after exposure. The per-user click-through
rate then has a true relative lift of exactly ``lift`` (``E[clicks / n | p] = p (1 + lift)``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from assets.experiments.analysis import analyze_experiment
from assets.experiments.readout import hold_verdicts, plan_from_units
from assets.experiments.units import experiment_units
from configs.schema.stages import ExperimentSpec
from runtime.request_log import RequestLog, read_request_log
from runtime.routing import Arm, assign

EXPERIMENT = ExperimentSpec(
    name="ranker_v2",
    unit="user_id",
    metric="click",
    arms=[
        {"name": "control", "model_alias": "champion", "weight": 0.5},
        {"name": "treatment", "model_alias": "challenger", "weight": 0.5},
    ],
    minimum_detectable_effect=0.2,
)
WEIGHTS = {arm.name: arm.weight for arm in EXPERIMENT.arms}
ROUTES = [Arm(arm.name, arm.weight, {}) for arm in EXPERIMENT.arms]
START = pd.Timestamp("2025-01-08")
A, B = 2.0, 18.0  # propensity ~ Beta(2, 18): mean 0.1, sd 0.065


def simulate(
    n_users: int, lift: float, log_path: Path, seed: int = 0, drop_treatment: float = 0.0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(request log as read back, events) of ``n_users`` users over two weeks."""
    rng = np.random.default_rng(seed)
    users = np.arange(1, n_users + 1)
    arms = np.array([assign(EXPERIMENT.name, int(u), ROUTES).name for u in users])
    propensity = rng.beta(A, B, n_users)
    exposed = START + pd.to_timedelta(rng.uniform(0, 24, n_users), unit="h")

    log = RequestLog(log_path)
    for user, arm, at in zip(users, arms, exposed, strict=True):
        if arm == "treatment" and rng.random() < drop_treatment:
            continue  # a crashing arm: these requests never reach the log
        for request in range(1 + rng.poisson(1)):
            as_of = (at + pd.Timedelta(hours=3 * request)).isoformat()
            log.write(
                endpoint="recommend",
                unit=int(user),
                arm=str(arm),
                request={"user_id": int(user), "k": 10, "as_of": as_of},
                model_versions={},
                features={},
                scores=[],
                response={"arm": str(arm)},
                feature_misses=0,
                latency_ms=1.0,
            )
    log.flush()
    log.close()

    frames = []
    for before in (True, False):
        shown = 1 + rng.poisson(20, n_users)
        user = np.repeat(users, shown)
        exposure = np.repeat(exposed.to_numpy(), shown)
        hours = pd.to_timedelta(rng.uniform(0.01, 7 * 24, len(user)), unit="h")
        rate = np.repeat(propensity, shown)
        if not before:
            rate = rate * np.where(np.repeat(arms, shown) == "treatment", 1 + lift, 1.0)
        frames.append(
            pd.DataFrame(
                {
                    "user_id": user,
                    "event_time": exposure - hours if before else exposure + hours,
                    "clicked": (rng.random(len(user)) < rate).astype(int),
                }
            )
        )
    return read_request_log(log_path), pd.concat(frames, ignore_index=True)


def analyse(requests: pd.DataFrame, events: pd.DataFrame, cuped: bool = True):
    units = experiment_units(
        requests,
        events,
        arms=list(WEIGHTS),
        unit_column="user_id",
        label_column="clicked",
        timestamp_column="event_time",
    )
    analysable = units.analysable
    plan, source = plan_from_units(EXPERIMENT, analysable)
    assert plan is not None and source == "pre-period"
    analysis = analyze_experiment(
        analysable,
        WEIGHTS,
        planned_n=plan.units,
        alpha=EXPERIMENT.alpha,
        metric="continuous",
        covariate_column="covariate" if cuped else None,
    )
    return analysis, plan, units


def test_known_lift_wins_with_an_interval_covering_it_and_cuped_narrows_it(
    tmp_path: Path,
) -> None:
    lift = 0.20
    requests, events = simulate(2400, lift, tmp_path / "log.sqlite")
    analysis, plan, units = analyse(requests, events)
    plain, _, _ = analyse(requests, events, cuped=False)
    (result,) = analysis.comparisons
    (raw,) = plain.comparisons

    assert result.n >= plan.units["treatment"] and result.n_control >= plan.units["control"]
    assert not analysis.srm.flagged and not units.mixed_units
    assert result.verdict == "treatment_wins" and result.test == "welch_cuped"
    assert result.relative_ci_low < lift < result.relative_ci_high
    true_diff = lift * A / (A + B)
    assert result.ci_low < true_diff < result.ci_high
    # CUPED on the pre-period rate: a real reduction, and a narrower interval than without it
    assert analysis.theta is not None and analysis.theta > 0
    assert result.variance_reduction > 0.15
    assert (result.ci_high - result.ci_low) < 0.95 * (raw.ci_high - raw.ci_low)
    assert raw.test == "welch" and raw.verdict == "treatment_wins"


def test_no_effect_names_no_winner(tmp_path: Path) -> None:
    # a fixed seed: 1 of 40 seeds tried gave a false winner (expected: alpha = 5%)
    requests, events = simulate(2400, 0.0, tmp_path / "log.sqlite", seed=5)
    analysis, plan, _ = analyse(requests, events)
    (result,) = analysis.comparisons
    assert result.n >= plan.units["treatment"]
    assert result.verdict == "no_significant_difference"
    assert result.relative_ci_low < 0 < result.relative_ci_high


def test_too_few_units_is_insufficient_even_when_significant(tmp_path: Path) -> None:
    requests, events = simulate(200, 1.0, tmp_path / "log.sqlite", seed=2)
    analysis, plan, _ = analyse(requests, events)
    (result,) = analysis.comparisons
    assert result.n < plan.units["treatment"]
    assert result.p_value < result.alpha  # a doubled CTR shows already...
    assert result.verdict == "insufficient_sample"  # ...but the plan is not reached


def test_an_arm_losing_units_is_a_sample_ratio_mismatch(tmp_path: Path) -> None:
    requests, events = simulate(2400, 0.2, tmp_path / "log.sqlite", seed=3, drop_treatment=0.15)
    analysis, _, _ = analyse(requests, events)
    assert analysis.srm.flagged and analysis.verdicts == {"treatment": "srm"}


def test_conversion_outcome_uses_the_two_proportion_z_test(tmp_path: Path) -> None:
    requests, events = simulate(600, 0.2, tmp_path / "log.sqlite", seed=4)
    units = experiment_units(
        requests,
        events,
        arms=list(WEIGHTS),
        unit_column="user_id",
        label_column="clicked",
        timestamp_column="event_time",
        outcome="conversion",
    )
    assert len(units.analysable) == len(units.table)  # every exposed user has a 0/1 outcome
    analysis = analyze_experiment(units.analysable, WEIGHTS, planned_n=None)
    assert analysis.metric == "binary" and analysis.comparisons[0].test == "z_test"


@pytest.mark.parametrize("outcome", ["rate", "conversion"])
def test_plan_falls_back_to_the_control_arm_without_a_pre_period(outcome: str) -> None:
    units = pd.DataFrame(
        {
            "arm": ["control"] * 4 + ["treatment"] * 4,
            "outcome": [0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0],
            "covariate": [np.nan] * 8,
        }
    )
    plan, source = plan_from_units(EXPERIMENT, units, outcome)
    assert plan is not None and source == "control arm 'control'"
    assert plan.baseline == pytest.approx(0.25)
    assert plan.metric == ("continuous" if outcome == "rate" else "proportion")
    none, why = plan_from_units(EXPERIMENT, units.iloc[:1], outcome)
    assert none is None and "no pre-period" in why


def test_without_a_plan_no_winner_is_named() -> None:
    units = pd.DataFrame(
        {"arm": ["control"] * 50 + ["treatment"] * 50, "outcome": [0.0] * 50 + [1.0] * 50}
    )
    analysis = analyze_experiment(units, WEIGHTS, planned_n=None)
    assert analysis.verdicts == {"treatment": "treatment_wins"}
    assert hold_verdicts(analysis).verdicts == {"treatment": "insufficient_sample"}
