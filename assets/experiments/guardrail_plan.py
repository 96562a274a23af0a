"""How many units a guardrail needs: the sample that shows non-inferiority when nothing changed.

A guardrail is shown non-inferior when the one-sided upper bound of its degradation falls below
the margin (:mod:`assets.experiments.guardrails`). Planned for a treatment that truly changes
nothing, that is a one-sided test of effect ``margin / sd_per_unit`` (the margin in units of one
unit's spread of the degradation), solved with statsmodels: ``TTestIndPower`` for a mean per
unit, ``NormalIndPower`` for a latency quantile (its bootstrap test is a normal approximation),
both with ``alternative="larger"``. Alpha is the per-comparison alpha of the primary metric
(Bonferroni over treatment arms), one-sided.

**Several guardrails.** A treatment ships only when *every* guardrail is non-inferior: an
intersection-union test, whose error (shipping while some guardrail is worse than its margin) is
at most alpha with no alpha correction, since each guardrail's own test must reject. What several
guardrails cost is power: all must pass together, so each is planned at power
``1 - (1 - power) / k`` for ``k`` guardrails (Bonferroni on beta), which keeps the chance that all
pass, when none degrades, at least ``power``. (The harm tests, where *any* guardrail stops the
test, are the ones corrected for multiplicity: Holm, in :mod:`assets.experiments.decision`.)

The experiment's sample is the largest of the primary's and the guardrails': the **binding** one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from statsmodels.stats.power import NormalIndPower, TTestIndPower

from assets.experiments.plan import Correction, check_weights, comparison_alpha

GuardrailKind = Literal["mean", "quantile"]


@dataclass(frozen=True)
class GuardrailPlan:
    """Units per arm that show one guardrail non-inferior, with the numbers they rest on."""

    guardrail: str
    kind: GuardrailKind
    margin: float
    relative: bool
    baseline: float | None  # the control's value, where known (shown only)
    sd_per_unit: float
    alpha: float  # one-sided, per comparison
    power: float  # per guardrail, after the correction for several
    effect_size: float
    units: dict[str, int]

    @property
    def total(self) -> int:
        """Units over all arms."""
        return sum(self.units.values())

    def as_dict(self) -> dict[str, Any]:
        """Plain values for JSON output."""
        return {**asdict(self), "total": self.total}


def guardrail_power(power: float, guardrails: int) -> float:
    """Power of each of ``guardrails`` so that all pass together with at least ``power``."""
    if not 0 < power < 1:
        raise ValueError(f"power must be in (0, 1), got {power}")
    return 1 - (1 - power) / max(guardrails, 1)


def plan_guardrail(
    weights: Mapping[str, float],
    *,
    guardrail: str,
    kind: GuardrailKind,
    margin: float,
    relative: bool,
    sd_per_unit: float,
    baseline: float | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
    guardrails: int = 1,
    correction: Correction = "bonferroni",
) -> GuardrailPlan:
    """Units per arm that show this guardrail non-inferior at ``margin`` when nothing changed.

    ``sd_per_unit`` is in the margin's units: for a relative margin the spread of a unit's value
    divided by the control value (its coefficient of variation), for an absolute margin the
    spread itself; a latency quantile's is its bootstrap standard error times
    ``sqrt(1 / n_t + 1 / n_c)``'s inverse, as the experiment analysis reports it.
    """
    shares = check_weights(weights)
    if not (math.isfinite(margin) and margin > 0):
        raise ValueError(f"guardrail {guardrail}: the margin must be a positive number")
    if not (math.isfinite(sd_per_unit) and sd_per_unit > 0):
        raise ValueError(
            f"guardrail {guardrail}: the spread per unit must be a positive number,"
            f" got {sd_per_unit}"
        )
    control, *treatments = shares
    per_test_alpha = comparison_alpha(alpha, len(treatments), correction)
    each_power = guardrail_power(power, guardrails)
    effect = margin / sd_per_unit
    solver = TTestIndPower() if kind == "mean" else NormalIndPower()
    total = max(
        float(
            solver.solve_power(
                effect_size=effect,
                nobs1=None,
                alpha=per_test_alpha,
                power=each_power,
                ratio=shares[arm] / shares[control],
                alternative="larger",
            )
        )
        / shares[control]
        for arm in treatments
    )
    units = {arm: math.ceil(total * share - 1e-9) for arm, share in shares.items()}
    return GuardrailPlan(
        guardrail,
        kind,
        margin,
        relative,
        baseline,
        sd_per_unit,
        per_test_alpha,
        each_power,
        effect,
        units,
    )


def binding(primary: Mapping[str, int] | None, plans: list[GuardrailPlan]) -> tuple[str, dict]:
    """The name and units per arm of the plan that needs the most units in total.

    ``primary`` is the primary metric's units per arm (None when it has no plan).
    """
    candidates = [("primary", dict(primary))] if primary else []
    candidates += [(plan.guardrail, plan.units) for plan in plans]
    if not candidates:
        return "none", {}
    return max(candidates, key=lambda named: sum(named[1].values()))
