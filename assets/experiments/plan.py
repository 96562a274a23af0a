"""How many units an A/B test needs, or what it can detect with the units it has.

A test is sized before it starts so that its verdict means something: stopping whenever the
p-value first dips below alpha finds "winners" that are noise, and an under-powered test misses
real effects. The numbers come from statsmodels' power solvers: the normal approximation with
Cohen's h for a proportion (``proportion_effectsize`` + ``NormalIndPower``) and the two-sample t
test with Cohen's d for a continuous metric (``TTestIndPower``). Effects are relative lifts over
the control (``0.05`` = +5 %), as in the ``experiment.minimum_detectable_effect`` field.

Unequal splits enter as ``ratio = treatment share / control share``. With more than two arms
every treatment is compared with the control (the first arm); ``correction="bonferroni"`` divides
alpha by the number of comparisons, so the chance of any false winner stays at most alpha, at the
price of more units. The analysis in :mod:`assets.experiments.analysis` uses the same correction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from statsmodels.stats.power import NormalIndPower, TTestIndPower
from statsmodels.stats.proportion import proportion_effectsize

from configs.schema.stages import ExperimentSpec

MetricKind = Literal["proportion", "continuous"]
Correction = Literal["bonferroni", "none"]

# ----------------------------------------------------------------------------- validation


def check_weights(weights: Mapping[str, float]) -> dict[str, float]:
    """The arm -> share mapping, checked: two or more arms, shares > 0 that sum to 1.

    The first arm is the control. Shares are checked here rather than trusted because they come
    from the CLI and from tables as well as from the validated YAML.
    """
    if len(weights) < 2:
        raise ValueError(f"an experiment needs at least two arms (control first), got {weights}")
    bad = {arm: w for arm, w in weights.items() if not (math.isfinite(w) and w > 0)}
    if bad:
        raise ValueError(f"arm weights must be positive numbers, got {bad}")
    total = sum(weights.values())
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"arm weights must sum to 1, got {total:g} ({dict(weights)})")
    return dict(weights)


def weights_from_ratio(ratio: float) -> dict[str, float]:
    """Control and treatment shares for ``treatment units = ratio x control units``."""
    if not (math.isfinite(ratio) and ratio > 0):
        raise ValueError(f"ratio must be a positive number, got {ratio}")
    return {"control": 1 / (1 + ratio), "treatment": ratio / (1 + ratio)}


def comparison_alpha(alpha: float, comparisons: int, correction: Correction) -> float:
    """Alpha of each treatment-vs-control test: ``alpha / comparisons`` under Bonferroni."""
    if correction not in ("bonferroni", "none"):
        raise ValueError(f"correction must be 'bonferroni' or 'none', got {correction!r}")
    return alpha / comparisons if correction == "bonferroni" else alpha


def _check_design(alpha: float, power: float, baseline: float, sd: float | None) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if not 0 < power < 1:
        raise ValueError(f"power must be in (0, 1), got {power}")
    if sd is None:
        if not 0 < baseline < 1:
            raise ValueError(f"a proportion baseline must be in (0, 1), got {baseline}")
        return
    if not (math.isfinite(sd) and sd > 0):
        raise ValueError(f"sd must be a positive number, got {sd}")
    if not math.isfinite(baseline) or baseline == 0:
        raise ValueError(f"a relative lift needs a non-zero baseline mean, got {baseline}")


# ----------------------------------------------------------------------------- effect sizes


def effect_size(baseline: float, relative_lift: float, sd: float | None = None) -> float:
    """Standardised effect of a relative lift: Cohen's h for a proportion, d for a mean.

    ``sd=None`` means ``baseline`` is a rate in (0, 1); otherwise it is the mean of a continuous
    metric with standard deviation ``sd``.
    """
    if not (math.isfinite(relative_lift) and relative_lift > 0):
        raise ValueError(
            f"the minimum detectable effect must be a positive lift, got {relative_lift}"
        )
    if sd is None:
        treated = baseline * (1 + relative_lift)
        if treated >= 1:
            raise ValueError(
                f"a {relative_lift:+.1%} lift on a {baseline:.1%} baseline reaches {treated:.1%};"
                " a proportion cannot exceed 100%"
            )
        return float(proportion_effectsize(treated, baseline))
    return abs(baseline) * relative_lift / sd


def lift_for_effect_size(baseline: float, effect: float, sd: float | None = None) -> float:
    """The relative lift whose Cohen's h (``sd=None``) or d equals ``effect``: the inverse above."""
    if sd is not None:
        return effect * sd / abs(baseline)
    angle = math.asin(math.sqrt(baseline)) + effect / 2
    if angle >= math.pi / 2:
        raise ValueError(
            f"too few units: not even a rate of 100% (from {baseline:.1%}) would be detected"
        )
    return math.sin(angle) ** 2 / baseline - 1


def _solver(sd: float | None) -> NormalIndPower | TTestIndPower:
    return NormalIndPower() if sd is None else TTestIndPower()


def control_units(
    effect: float, *, sd: float | None, alpha: float, power: float, ratio: float
) -> float:
    """Control units (not rounded) that detect ``effect`` two-sided; treatment = ``ratio`` times."""
    return float(
        _solver(sd).solve_power(
            effect_size=effect, nobs1=None, alpha=alpha, power=power, ratio=ratio
        )
    )


def detectable_effect(
    n_control: float, *, sd: float | None, alpha: float, power: float, ratio: float
) -> float:
    """The standardised effect detected with ``n_control`` control units and ``ratio`` x as many."""
    if n_control < 2 or n_control * ratio < 2:
        raise ValueError(
            f"each arm needs at least 2 units, got {n_control:g} control"
            f" and {n_control * ratio:g} treatment"
        )
    return float(
        _solver(sd).solve_power(
            effect_size=None, nobs1=n_control, alpha=alpha, power=power, ratio=ratio
        )
    )


def sample_size(
    baseline: float,
    mde: float,
    *,
    sd: float | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
    ratio: float = 1.0,
) -> tuple[int, int]:
    """(control, treatment) units to detect a relative lift ``mde`` of a two-arm test.

    ``sd=None``: ``baseline`` is a conversion rate; otherwise a mean with standard deviation ``sd``.
    """
    plan = plan_sample_size(
        weights_from_ratio(ratio), baseline, mde, sd=sd, alpha=alpha, power=power
    )
    return plan.units["control"], plan.units["treatment"]


def minimum_detectable_effect(
    baseline: float,
    n_control: int,
    *,
    sd: float | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
    ratio: float = 1.0,
) -> float:
    """The relative lift a two-arm test detects with ``n_control`` units and ``ratio`` x as many."""
    _check_design(alpha, power, baseline, sd)
    effect = detectable_effect(n_control, sd=sd, alpha=alpha, power=power, ratio=ratio)
    return lift_for_effect_size(baseline, effect, sd)


# ----------------------------------------------------------------------------- plans


@dataclass(frozen=True)
class ExperimentPlan:
    """Units per arm and the effect they detect, for every arm compared with the control.

    ``mde`` is the relative lift detected by every comparison: the worst (smallest) treatment arm
    sets it when the plan was solved from a fixed number of units.
    """

    baseline: float
    sd: float | None  # None: a proportion metric; else a continuous one with this sd
    mde: float
    alpha: float
    comparison_alpha: float
    power: float
    weights: dict[str, float]
    units: dict[str, int]
    effect_size: float

    @property
    def control(self) -> str:
        """The arm every other arm is compared with."""
        return next(iter(self.weights))

    @property
    def total(self) -> int:
        """Units over all arms."""
        return sum(self.units.values())

    @property
    def metric(self) -> MetricKind:
        return "proportion" if self.sd is None else "continuous"

    def as_dict(self) -> dict[str, Any]:
        """Plain values for JSON output."""
        return {
            "metric": self.metric,
            **asdict(self),
            "control": self.control,
            "total": self.total,
        }


def plan_sample_size(
    weights: Mapping[str, float],
    baseline: float,
    mde: float,
    *,
    sd: float | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
    correction: Correction = "bonferroni",
) -> ExperimentPlan:
    """Units per arm so that each treatment-vs-control test detects a relative lift ``mde``.

    Traffic is split by ``weights``, so the total is set by the comparison that needs the most;
    each arm's units are rounded up.
    """
    shares = check_weights(weights)
    _check_design(alpha, power, baseline, sd)
    control, *treatments = shares
    per_test_alpha = comparison_alpha(alpha, len(treatments), correction)
    effect = effect_size(baseline, mde, sd)
    total = max(
        control_units(
            effect,
            sd=sd,
            alpha=per_test_alpha,
            power=power,
            ratio=shares[arm] / shares[control],
        )
        / shares[control]
        for arm in treatments
    )
    units = {arm: math.ceil(total * share - 1e-9) for arm, share in shares.items()}
    return ExperimentPlan(baseline, sd, mde, alpha, per_test_alpha, power, shares, units, effect)


def split_units(total: int, weights: Mapping[str, float]) -> dict[str, int]:
    """Whole units per arm summing to ``total``, as close to the shares as possible."""
    exact = {arm: total * share for arm, share in weights.items()}
    units = {arm: math.floor(value) for arm, value in exact.items()}
    by_remainder = sorted(exact, key=lambda arm: units[arm] - exact[arm])
    for arm in by_remainder[: total - sum(units.values())]:
        units[arm] += 1
    return units


def plan_mde(
    weights: Mapping[str, float],
    baseline: float,
    total: int,
    *,
    sd: float | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
    correction: Correction = "bonferroni",
) -> ExperimentPlan:
    """The relative lift every treatment-vs-control test detects with ``total`` units split by
    ``weights``: the inverse of :func:`plan_sample_size`."""
    shares = check_weights(weights)
    _check_design(alpha, power, baseline, sd)
    control, *treatments = shares
    per_test_alpha = comparison_alpha(alpha, len(treatments), correction)
    units = split_units(total, shares)
    effect = max(
        detectable_effect(
            units[control],
            sd=sd,
            alpha=per_test_alpha,
            power=power,
            ratio=units[arm] / units[control],
        )
        for arm in treatments
    )
    mde = lift_for_effect_size(baseline, effect, sd)
    return ExperimentPlan(baseline, sd, mde, alpha, per_test_alpha, power, shares, units, effect)


def plan_experiment(
    experiment: ExperimentSpec,
    baseline: float,
    *,
    sd: float | None = None,
    total: int | None = None,
    correction: Correction = "bonferroni",
) -> ExperimentPlan:
    """The plan of a use case's ``experiment`` section: its arms, alpha, power and MDE.

    The YAML holds no baseline (it changes with the traffic), so it is given here. With ``total``
    the MDE is solved from that many units instead of units from the section's MDE.
    """
    weights = {arm.name: arm.weight for arm in experiment.arms}
    common: dict[str, Any] = {
        "sd": sd,
        "alpha": experiment.alpha,
        "power": experiment.power,
        "correction": correction,
    }
    if total is not None:
        return plan_mde(weights, baseline, total, **common)
    return plan_sample_size(weights, baseline, experiment.minimum_detectable_effect, **common)
