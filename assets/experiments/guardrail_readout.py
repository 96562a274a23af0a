"""The guardrails of a running A/B test judged at one look, and the decision they lead to.

Plain functions, no Dagster, as :mod:`assets.experiments.readout` is for the primary metric:
the asset hands over the request log, the events and the units it built; this module measures
each guardrail (:mod:`assets.experiments.guardrail_metrics`), tests it per treatment arm
(:mod:`assets.experiments.guardrails`), sizes it from the control arm at this look
(:mod:`assets.experiments.guardrail_plan`; the request log has no pre-period, unlike the
primary metric), finds the binding plan, judges every guardrail and decides each arm
(:mod:`assets.experiments.decision`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from assets.experiments.decision import (
    ArmDecision,
    JudgedGuardrail,
    decide,
    evidence,
    judge_guardrails,
    unavailable,
)
from assets.experiments.guardrail_metrics import (
    ERROR_COLUMN,
    error_rates,
    label_rates,
    latency_sample,
    unit_requests,
)
from assets.experiments.guardrail_plan import GuardrailPlan, binding, plan_guardrail
from assets.experiments.guardrails import GuardrailTest, mean_guardrail, quantile_guardrail
from assets.experiments.plan import comparison_alpha
from assets.experiments.readout import ExperimentReadout
from assets.experiments.units import ExperimentUnits
from configs.schema.guardrails import GuardrailSpec, latency_quantile
from configs.schema.stages import ExperimentSpec


@dataclass(frozen=True)
class GuardrailReadout:
    """Every guardrail per treatment arm, their plans, the binding plan and each arm's decision."""

    judged: list[JudgedGuardrail]
    plans: list[GuardrailPlan]
    plan_notes: dict[str, str]  # guardrail -> why it has no plan yet
    binding: str  # "primary", a guardrail's name, or "none"
    planned_units: dict[str, int]  # the binding plan's units per arm
    decisions: list[ArmDecision]

    @property
    def verdict(self) -> str:
        """The decision of a two-arm test, ``arm: decision`` pairs otherwise."""
        if len(self.decisions) == 1:
            return self.decisions[0].verdict
        return ", ".join(f"{d.arm}: {d.verdict}" for d in self.decisions)

    @property
    def stop(self) -> bool:
        """Whether the test should be stopped now (a do-not-ship found before its horizon)."""
        return any(d.stop for d in self.decisions)

    @property
    def harmful(self) -> list[JudgedGuardrail]:
        return [g for g in self.judged if g.status == "harmful"]

    @property
    def summary(self) -> str:
        """One paragraph for the UI: the decision, whether to stop, and why."""
        lines = []
        for d in self.decisions:
            head = f"{d.arm}: {d.verdict.upper().replace('_', ' ')}"
            if d.stop:
                head += " - stop the experiment"
            lines.append(f"{head}. {d.reason}.")
        return " ".join(lines)


def _names(guardrail: GuardrailSpec, arm: str, control: str) -> dict[str, str]:
    return {
        "guardrail": guardrail.label,
        "metric": guardrail.metric,
        "arm": arm,
        "control": control,
    }


def _per_unit(values: pd.DataFrame, arm: str) -> np.ndarray:
    return values.loc[values["arm"] == arm, "value"].to_numpy(dtype=float)


def _measure(
    guardrail: GuardrailSpec,
    requests: pd.DataFrame,
    events: pd.DataFrame | None,
    units: ExperimentUnits,
    arms: list[str],
    levels: tuple[float, float],
    columns: tuple[str, Mapping[str, str], str],
) -> list[GuardrailTest | JudgedGuardrail]:
    """One guardrail's test per treatment arm (a JudgedGuardrail when it cannot be measured)."""
    control, *treatments = arms
    ni_alpha, harm_alpha = levels
    unit_column, label_columns, timestamp_column = columns
    common = {
        "margin": guardrail.max_degradation,
        "relative": guardrail.relative,
        "higher_is_better": guardrail.direction_higher,
        "ni_alpha": ni_alpha,
        "harm_alpha": harm_alpha,
    }
    if guardrail.kind == "latency":
        frame = unit_requests(requests, units)
        quantile = latency_quantile(guardrail.metric) or 0.99
        return [
            quantile_guardrail(
                latency_sample(frame, arm),
                latency_sample(frame, control),
                quantile=quantile,
                names=_names(guardrail, arm, control),
                **common,
            )
            for arm in treatments
        ]
    if guardrail.kind == "error_rate":
        values = error_rates(unit_requests(requests, units))
        why = f"the request log has no {ERROR_COLUMN!r} column: failed requests are not logged"
    else:
        column = label_columns.get(guardrail.metric)
        values, why = None, f"no label {guardrail.metric!r}"
        if events is not None and column is not None:
            values = label_rates(
                requests,
                events,
                arms=arms,
                unit_column=unit_column,
                label_column=column,
                timestamp_column=timestamp_column,
            )
    if values is None:
        return [
            unavailable(
                GuardrailTest(
                    test="unavailable",
                    n=0,
                    n_control=0,
                    **_names(guardrail, arm, control),
                    higher_is_better=guardrail.direction_higher,
                    relative=guardrail.relative,
                    margin=guardrail.max_degradation,
                ),  # fmt: skip
                why,
            )
            for arm in treatments
        ]
    return [
        mean_guardrail(
            _per_unit(values, arm),
            _per_unit(values, control),
            names=_names(guardrail, arm, control),
            **common,
        )
        for arm in treatments
    ]


def _plan(
    experiment: ExperimentSpec, guardrail: GuardrailSpec, test: GuardrailTest
) -> GuardrailPlan | str:
    """The guardrail's plan from this look's control arm, or why there is none yet."""
    if test.sd_per_unit is None or test.value_control is None:
        return "too few units to estimate its spread"
    if not test.sd_per_unit > 0:
        return "no spread in the control arm yet"
    weights = {arm.name: arm.weight for arm in experiment.arms}
    return plan_guardrail(
        weights,
        guardrail=guardrail.label,
        kind="quantile" if guardrail.kind == "latency" else "mean",
        margin=guardrail.max_degradation,
        relative=guardrail.relative,
        baseline=test.value_control,
        sd_per_unit=test.sd_per_unit,
        alpha=experiment.alpha,
        power=experiment.power,
        guardrails=len(experiment.guardrails),
    )


def _units_needed(
    arms: list[str],
    primary: ExperimentReadout | None,
    plans: list[GuardrailPlan],
    tests: list[GuardrailTest],
) -> dict[str, int] | None:
    """Further units each arm needs for every plan; None without a primary plan."""
    if primary is None or primary.plan is None:
        return None
    needed = dict.fromkeys(arms, 0)
    for c in primary.analysis.comparisons:
        needed[c.arm] = max(needed[c.arm], primary.planned_units[c.arm] - c.n)
        needed[c.control] = max(needed[c.control], primary.planned_units[c.control] - c.n_control)
    by_name = {plan.guardrail: plan for plan in plans}
    for test in tests:
        plan = by_name.get(test.guardrail)
        if plan is not None:
            needed[test.arm] = max(needed[test.arm], plan.units[test.arm] - test.n)
            needed[test.control] = max(
                needed[test.control], plan.units[test.control] - test.n_control
            )
    return needed


def read_guardrails(
    experiment: ExperimentSpec,
    requests: pd.DataFrame,
    events: pd.DataFrame | None,
    units: ExperimentUnits,
    primary: ExperimentReadout | None,
    *,
    label_columns: Mapping[str, str],
    timestamp_column: str,
) -> GuardrailReadout:
    """Measure, test, size and judge every guardrail; decide each treatment arm.

    ``primary`` is the primary metric's readout (None when no unit has an outcome yet);
    ``label_columns`` maps label names to events columns.
    """
    arms = [arm.name for arm in experiment.arms]
    control, *treatments = arms
    ni_alpha = comparison_alpha(experiment.alpha, len(treatments), "bonferroni")
    # bounds shown at the Bonferroni level of the harm tests (Holm decides; its first step)
    harm_alpha = experiment.alpha / max(1, len(experiment.guardrails) * len(treatments))
    columns = (experiment.unit, label_columns, timestamp_column)
    measured: list[GuardrailTest | JudgedGuardrail] = []
    plans: list[GuardrailPlan] = []
    notes: dict[str, str] = {}
    for guardrail in experiment.guardrails:
        per_arm = _measure(
            guardrail, requests, events, units, arms, (ni_alpha, harm_alpha), columns
        )
        measured += per_arm
        first = per_arm[0]
        plan = (
            _plan(experiment, guardrail, first)
            if isinstance(first, GuardrailTest)
            else "unavailable"
        )
        if isinstance(plan, str):
            notes[guardrail.label] = plan
        else:
            plans.append(plan)
    tests = [m for m in measured if isinstance(m, GuardrailTest)]
    # a measurable guardrail without a plan leaves the horizon unknown; an unavailable one does
    # not (running longer will not make it measurable: it can only block shipping)
    unknown = any(note != "unavailable" for note in notes.values())
    needed = None if unknown else _units_needed(arms, primary, plans, tests)
    reached = {
        arm: needed is not None and needed[arm] <= 0 and needed[control] <= 0 for arm in treatments
    }
    judged_tests = iter(
        judge_guardrails(tests, alpha=experiment.alpha, ni_alpha=ni_alpha, reached=reached)
    )
    judged = [m if isinstance(m, JudgedGuardrail) else next(judged_tests) for m in measured]
    comparisons = {c.arm: c for c in primary.analysis.comparisons} if primary else {}
    decisions = [
        decide(arm, comparisons.get(arm), [g for g in judged if g.test.arm == arm], needed)
        for arm in treatments
    ]
    name, planned = binding(primary.planned_units if primary else None, plans)
    return GuardrailReadout(judged, plans, notes, name, planned, decisions)


def evidence_lines(readout: GuardrailReadout) -> str:
    """Every guardrail's evidence, one per line, for the asset check's metadata."""
    return "\n".join(f"- {evidence(g)} [{g.status}]" for g in readout.judged) or "_(none)_"
