"""Guardrails on simulated A/B tests with known effects, through the real request log.

Each simulated user has a click propensity (as in ``test_simulated_experiment``), buys after a
click with probability ``BUY``, and is routed by the real hash; every request goes through the
real SQLite request log with a latency drawn from a log-normal whose median the treatment can
stretch (8 requests a user where the p99 must show harm early: it rests on the slowest 1%). The
true effects are known: the treatment multiplies clicks by ``1 + lift``, purchases
per click by ``1 - purchase_drop`` and every latency by ``slowdown``, so the p99 grows by exactly
``slowdown - 1``. The readout is then judged as the asset judges it
(:func:`assets.experiments.guardrail_readout.read_guardrails`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from assets.experiments.guardrail_readout import read_guardrails
from assets.experiments.guardrail_report import guardrail_check, guardrail_metadata
from assets.experiments.readout import read_out
from assets.experiments.units import experiment_units
from configs.schema.stages import ExperimentSpec
from runtime.request_log import RequestLog, read_request_log
from runtime.routing import Arm, assign

START = pd.Timestamp("2025-01-08")
BUY = 0.5  # purchases per click
LABELS = {"click": "clicked", "purchase": "purchased"}


def experiment(*guardrails: dict) -> ExperimentSpec:
    return ExperimentSpec(
        name="ranker_v2",
        unit="user_id",
        metric="click",
        arms=[
            {"name": "control", "model_alias": "champion", "weight": 0.5},
            {"name": "treatment", "model_alias": "challenger", "weight": 0.5},
        ],
        minimum_detectable_effect=0.2,
        guardrails=list(guardrails),
    )


LATENCY = {"metric": "latency_p99", "max_degradation": 0.10}
PURCHASE = {"metric": "purchase", "max_degradation": 0.25}


def simulate(
    spec: ExperimentSpec,
    n_users: int,
    log_path: Path,
    *,
    lift: float = 0.0,
    slowdown: float = 1.0,
    purchase_drop: float = 0.0,
    requests_per_user: float = 3.0,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(request log as read back, events) of ``n_users`` users over two weeks."""
    rng = np.random.default_rng(seed)
    users = np.arange(1, n_users + 1)
    routes = [Arm(arm.name, arm.weight, {}) for arm in spec.arms]
    arms = np.array([assign(spec.name, int(u), routes).name for u in users])
    treated = arms == "treatment"
    propensity = rng.beta(2.0, 18.0, n_users)
    exposed = START + pd.to_timedelta(rng.uniform(0, 24, n_users), unit="h")

    log = RequestLog(log_path)
    for user, arm, at in zip(users, arms, exposed, strict=True):
        stretch = slowdown if arm == "treatment" else 1.0
        for request in range(1 + rng.poisson(requests_per_user - 1)):
            log.write(
                endpoint="recommend",
                unit=int(user),
                arm=str(arm),
                request={
                    "user_id": int(user),
                    "as_of": (at + pd.Timedelta(hours=request)).isoformat(),
                },
                model_versions={},
                features={},
                scores={},
                response={"arm": str(arm)},
                feature_misses=0,
                latency_ms=float(stretch * rng.lognormal(np.log(40.0), 0.25)),
            )
    log.flush()
    log.close()

    frames = []
    for before in (True, False):
        shown = 1 + rng.poisson(20, n_users)
        user = np.repeat(users, shown)
        click_rate = np.repeat(propensity, shown)
        buy_rate = np.full(len(user), BUY)
        if not before:
            is_treated = np.repeat(treated, shown)
            click_rate = click_rate * np.where(is_treated, 1 + lift, 1.0)
            buy_rate = buy_rate * np.where(is_treated, 1 - purchase_drop, 1.0)
        hours = pd.to_timedelta(rng.uniform(0.01, 7 * 24, len(user)), unit="h")
        at = np.repeat(exposed.to_numpy(), shown)
        clicked = rng.random(len(user)) < click_rate
        frames.append(
            pd.DataFrame(
                {
                    "user_id": user,
                    "event_time": at - hours if before else at + hours,
                    "clicked": clicked.astype(int),
                    "purchased": (clicked & (rng.random(len(user)) < buy_rate)).astype(int),
                }
            )
        )
    return read_request_log(log_path), pd.concat(frames, ignore_index=True)


def judge(spec: ExperimentSpec, requests: pd.DataFrame, events: pd.DataFrame):
    """The primary readout and the guardrails' readout, as the asset computes them."""
    units = experiment_units(
        requests,
        events,
        arms=[arm.name for arm in spec.arms],
        unit_column="user_id",
        label_column="clicked",
        timestamp_column="event_time",
    )
    weights = {arm.name: arm.weight for arm in spec.arms}
    primary = read_out(spec, units.analysable, weights)
    guards = read_guardrails(
        spec,
        requests,
        events,
        units,
        primary,
        label_columns=LABELS,
        timestamp_column="event_time",
    )
    return primary, guards


def by_name(guards) -> dict:
    return {g.test.guardrail: g for g in guards.judged}


def test_a_slower_treatment_is_stopped_early_and_an_unchanged_purchase_rate_is_fine(
    tmp_path: Path,
) -> None:
    spec = experiment(LATENCY, PURCHASE)
    requests, events = simulate(
        spec, 600, tmp_path / "log.sqlite", lift=0.2, slowdown=1.4, requests_per_user=8
    )
    primary, guards = judge(spec, requests, events)
    latency, purchase = by_name(guards)["latency_p99"], by_name(guards)["purchase"]

    # the p99 is 40% slower against a 10% margin: harmful, with an always-valid bound above it
    assert latency.status == "harmful"
    t = latency.test
    assert t.degradation == pytest.approx(0.4, abs=0.15)
    assert t.harm_bound > t.margin and latency.harm_p_adjusted < spec.alpha
    assert t.ni_p_value > spec.alpha and t.ni_bound > t.margin
    # purchases per click are untouched, so purchases per impression rise with the clicks (20%):
    # a negative degradation, far from harm, though not yet judged non-inferior (too early)
    assert purchase.status == "pending" and purchase.harm_p_adjusted == 1.0
    assert purchase.test.degradation < 0 and purchase.test.ni_bound < purchase.test.margin
    # 600 users are far from the plan: the primary may not have a winner yet, yet the test stops
    assert primary.analysis.verdicts == {"treatment": "insufficient_sample"}
    (decision,) = guards.decisions
    assert decision.verdict == "do_not_ship" and decision.stop
    assert "latency_p99" in decision.reason and "purchase" not in decision.reason
    assert guards.stop and "stop the experiment" in guards.summary

    passed, metadata = guardrail_check(guards)
    assert not passed
    assert metadata["guardrail/latency_p99/status"] == "harmful"
    for field in ("degradation", "harm_bound", "ni_bound", "margin", "ni_p_value"):
        assert f"guardrail/latency_p99/{field}" in metadata
    assert (
        "latency_p99" in metadata["evidence"].value
        and "margin +10.00%" in metadata["evidence"].value
    )
    shown = guardrail_metadata(guards)
    assert shown["decision"] == "do_not_ship" and shown["stop"] is True
    assert "at least (any look)" in shown["guardrails"].value


def test_fine_guardrails_and_a_winning_primary_ship_once_the_binding_plan_is_reached(
    tmp_path: Path,
) -> None:
    spec = experiment({**LATENCY, "max_degradation": 0.15}, PURCHASE)
    requests, events = simulate(spec, 3000, tmp_path / "log.sqlite", lift=0.25, seed=1)
    primary, guards = judge(spec, requests, events)

    assert {g.status for g in guards.judged} == {"non_inferior"}
    assert primary.analysis.verdicts == {"treatment": "treatment_wins"}
    (decision,) = guards.decisions
    assert decision.verdict == "ship" and not decision.stop and decision.units_needed == {}
    # the binding plan is the largest; every arm has reached it
    totals = {"primary": primary.plan.total, **{p.guardrail: p.total for p in guards.plans}}
    assert guards.binding == max(totals, key=totals.get)
    n = {"treatment": primary.frame["n"].iloc[0], "control": primary.frame["n_control"].iloc[0]}
    assert all(n[arm] >= units for arm, units in guards.planned_units.items())
    passed, _ = guardrail_check(guards)
    assert passed


def test_a_purchase_drop_beyond_its_margin_is_harmful_while_latency_is_fine(tmp_path: Path) -> None:
    spec = experiment({**LATENCY, "max_degradation": 0.15}, PURCHASE)
    requests, events = simulate(
        spec, 3000, tmp_path / "log.sqlite", lift=0.25, purchase_drop=0.6, seed=2
    )
    _, guards = judge(spec, requests, events)
    statuses = {name: g.status for name, g in by_name(guards).items()}
    assert statuses == {"latency_p99": "non_inferior", "purchase": "harmful"}
    # purchases per click fall 60%, clicks rise 25%: purchases per impression fall 50%
    assert by_name(guards)["purchase"].test.degradation == pytest.approx(0.5, abs=0.1)
    (decision,) = guards.decisions
    assert decision.verdict == "do_not_ship" and "purchase" in decision.reason


def test_too_few_units_keep_running_with_the_units_still_needed(tmp_path: Path) -> None:
    spec = experiment(LATENCY, PURCHASE)
    requests, events = simulate(spec, 300, tmp_path / "log.sqlite", lift=0.2, seed=3)
    _, guards = judge(spec, requests, events)
    assert {g.status for g in guards.judged} <= {"pending"}
    (decision,) = guards.decisions
    assert decision.verdict == "keep_running" and not decision.stop
    assert decision.units_needed and all(n > 0 for n in decision.units_needed.values())
    assert "more units needed" in decision.reason


def test_error_rate_needs_failures_in_the_log(tmp_path: Path) -> None:
    spec = experiment({"metric": "error_rate", "max_degradation": 0.01, "relative": False})
    requests, events = simulate(spec, 600, tmp_path / "log.sqlite", seed=4)
    # a log written before failures were logged (no ``error`` column): the guardrail says so
    # and never passes on zero failures it never saw
    _, guards = judge(spec, requests.drop(columns="error"), events)
    (error_rate,) = guards.judged
    assert error_rate.status == "unavailable" and "'error' column" in error_rate.reason

    # with failures logged (an ``error`` per request, null when served): 5% more in treatment
    rng = np.random.default_rng(0)
    rate = np.where(requests["arm"] == "treatment", 0.06, 0.01)
    failed = rng.random(len(requests)) < rate
    logged = requests.assign(error=np.where(failed, "model timeout", None))
    _, guards = judge(spec, logged, events)
    (error_rate,) = guards.judged
    assert error_rate.status == "harmful"
    assert error_rate.test.degradation == pytest.approx(0.05, abs=0.02)
    assert guards.decisions[0].verdict == "do_not_ship"


def test_a_harmful_guardrail_stops_the_test_before_any_primary_outcome(tmp_path: Path) -> None:
    """Fraud's chargebacks arrive days late: latency harm must not wait for them."""
    spec = experiment(LATENCY, PURCHASE)
    requests, events = simulate(
        spec, 600, tmp_path / "log.sqlite", slowdown=1.4, requests_per_user=8, seed=5
    )
    no_labels_yet = events.iloc[:0]
    units = experiment_units(
        requests,
        no_labels_yet,
        arms=["control", "treatment"],
        unit_column="user_id",
        label_column="clicked",
        timestamp_column="event_time",
    )
    assert units.analysable.empty
    guards = read_guardrails(
        spec,
        requests,
        no_labels_yet,
        units,
        None,
        label_columns=LABELS,
        timestamp_column="event_time",
    )
    statuses = {g.test.guardrail: g.status for g in guards.judged}
    assert statuses == {"latency_p99": "harmful", "purchase": "pending"}
    (decision,) = guards.decisions
    assert decision.verdict == "do_not_ship" and decision.stop


def test_the_shipped_feed_experiment_has_guardrails_and_their_check() -> None:
    from assets.experiments.experiment_analysis_assets import GUARDRAIL_CHECK, experiment_assets
    from configs import CONFIG_DIR
    from dagster_project.use_case_files import load_use_cases

    (spec,) = load_use_cases([CONFIG_DIR / "feed.yaml"])
    metrics = [g.metric for g in spec.experiment.guardrails]
    assert metrics == ["latency_p99", "error_rate", "purchase"]
    (asset,) = experiment_assets(spec)
    assert GUARDRAIL_CHECK in {key.name for key in asset.check_keys}
