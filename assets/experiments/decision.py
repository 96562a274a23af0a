"""The experiment's decision per treatment arm: ship, do not ship, or keep running, and why.

Guardrails are judged first (:func:`judge_guardrails`):

* ``harmful``: the always-valid harm test rejects after **Holm's** correction over every
  guardrail of every treatment arm (statsmodels ``multipletests(method="holm")``). Any one
  harmful guardrail stops the test, so the chance of a false stop grows with their number, and
  Holm keeps it at most alpha (it is valid for always-valid p-values at any look, since each
  true null's p-value stays above ``alpha / m`` at every look with probability ``1 - alpha / m``).
  Evaluated at every look.
* ``non_inferior``: the fixed-sample non-inferiority test rejects at the per-comparison alpha,
  once the guardrail's arm pair has its planned units (before that the guardrail is ``pending``:
  a fixed-sample test is only valid at its planned size: the binding plan, the test's horizon). No alpha correction is needed for the
  "every guardrail" rule (an intersection-union test); the plan corrects power instead.
* ``inconclusive``: planned units reached, neither shown; ``pending``: not yet (or too few units
  to test); ``unavailable``: the log does not record what the metric needs.

Then the arm's verdict, first match wins (:func:`decide`):

1. ``do_not_ship`` and stop: a sample-ratio mismatch (nothing can be trusted), a harmful
   guardrail (with its evidence), or the primary metric significantly worse.
2. ``keep_running`` while any arm is short of the binding plan (the largest of the primary's and
   the guardrails'), with the units still needed; also when no plan could be made yet.
3. ``ship``: the primary metric wins and every guardrail is non-inferior.
4. ``do_not_ship`` otherwise, at the planned sample: no significant win, or a guardrail not shown
   non-inferior. The plan is the test's horizon; running on past it and testing again would
   inflate the fixed-sample tests' errors, so an inconclusive result there is a final "no".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from statsmodels.stats.multitest import multipletests

from assets.experiments.comparison import ArmComparison
from assets.experiments.guardrails import GuardrailTest

GuardrailStatus = Literal["pending", "non_inferior", "harmful", "inconclusive", "unavailable"]
DecisionVerdict = Literal["ship", "do_not_ship", "keep_running"]


@dataclass(frozen=True)
class JudgedGuardrail:
    """A guardrail test with its status and Holm-adjusted harm p-value."""

    test: GuardrailTest
    status: GuardrailStatus
    harm_p_adjusted: float | None = None
    reason: str = ""


@dataclass(frozen=True)
class ArmDecision:
    """One treatment arm's verdict; ``stop`` when the test should end now, ``units_needed`` the
    further units per arm the binding plan still needs (empty once reached)."""

    arm: str
    verdict: DecisionVerdict
    stop: bool
    reason: str
    units_needed: dict[str, int]


def unavailable(test: GuardrailTest, reason: str) -> JudgedGuardrail:
    """A guardrail the data cannot measure: never passes, never stops the test."""
    return JudgedGuardrail(test, "unavailable", None, reason)


def judge_guardrails(
    tests: list[GuardrailTest],
    *,
    alpha: float,
    ni_alpha: float,
    reached: Mapping[str, bool],
) -> list[JudgedGuardrail]:
    """Status of each guardrail test: Holm over the harm p-values, the fixed-sample
    non-inferiority test once ``reached[arm]``: the arm and the control have the binding plan's
    units (the test's horizon, where its one fixed-sample look is made)."""
    tested = [i for i, t in enumerate(tests) if t.harm_p_value is not None]
    adjusted: dict[int, float] = {}
    if tested:
        _, corrected, _, _ = multipletests(
            [tests[i].harm_p_value for i in tested], alpha=alpha, method="holm"
        )
        adjusted = dict(zip(tested, (float(p) for p in corrected), strict=True))
    judged = []
    for i, test in enumerate(tests):
        p_adjusted = adjusted.get(i)
        status: GuardrailStatus
        if p_adjusted is not None and p_adjusted <= alpha:
            status = "harmful"
        elif test.ni_p_value is None or not reached.get(test.arm, False):
            status = "pending"
        elif test.ni_p_value <= ni_alpha:
            status = "non_inferior"
        else:
            status = "inconclusive"
        judged.append(JudgedGuardrail(test, status, p_adjusted))
    return judged


def _percent(value: float | None, relative: bool) -> str:
    if value is None:
        return "-"
    return f"{value:+.2%}" if relative else f"{value:+.4g}"


def evidence(judged: JudgedGuardrail) -> str:
    """One sentence of a guardrail's numbers: estimate, bounds, margin and p-values."""
    t = judged.test
    if judged.status == "unavailable":
        return f"{t.guardrail}: unavailable ({judged.reason})"
    if t.degradation is None and t.ni_p_value is None:
        return f"{t.guardrail}: too few units ({t.n} / {t.n_control})"
    pieces = [
        f"{t.guardrail}: degradation {_percent(t.degradation, t.relative)}",
        f"at least {_percent(t.harm_bound, t.relative)} (always valid)",
        f"at most {_percent(t.ni_bound, t.relative)}",
        f"margin {_percent(t.margin, t.relative)}",
        f"harm p {judged.harm_p_adjusted:.3g} (Holm)" if judged.harm_p_adjusted is not None else "",
        f"non-inferiority p {t.ni_p_value:.3g}" if t.ni_p_value is not None else "",
    ]
    return ", ".join(p for p in pieces if p)


def decide(
    arm: str,
    comparison: ArmComparison | None,
    guardrails: list[JudgedGuardrail],
    units_needed: Mapping[str, int] | None,
) -> ArmDecision:
    """The verdict of treatment ``arm`` from its primary comparison (None: no outcome yet), its
    judged guardrails and the units each arm still needs (None: no plan could be made yet)."""
    needed = {a: n for a, n in (units_needed or {}).items() if n > 0}

    def verdict(kind: DecisionVerdict, stop: bool, reason: str) -> ArmDecision:
        return ArmDecision(arm, kind, stop, reason, needed)

    if comparison is not None and comparison.verdict == "srm":
        return verdict("do_not_ship", True, "sample-ratio mismatch: the split is broken")
    harmful = [g for g in guardrails if g.status == "harmful"]
    if harmful:
        shown = "; ".join(evidence(g) for g in harmful)
        return verdict("do_not_ship", True, f"guardrail worse than its margin: {shown}")
    if comparison is not None and comparison.verdict == "control_wins":
        return verdict("do_not_ship", True, f"primary metric worse (p {comparison.p_value:.3g})")
    if units_needed is None or needed or comparison is None:
        if comparison is None:
            why = "no primary outcome yet"
        elif units_needed is None:
            why = "the sample needed is not known yet (too little data to plan from)"
        else:
            why = "more units needed: " + ", ".join(f"{a} +{n:,}" for a, n in needed.items())
        return verdict("keep_running", False, why)
    weak = [g for g in guardrails if g.status != "non_inferior"]
    if comparison.verdict == "treatment_wins" and not weak:
        return verdict("ship", False, "primary metric wins, every guardrail non-inferior")
    if comparison.verdict != "treatment_wins":
        why = "no significant win at the planned sample"
    else:
        why = "not shown non-inferior at the planned sample: " + "; ".join(
            evidence(g) for g in weak
        )
    return verdict("do_not_ship", False, why)
