"""``playbook ab``: size an A/B test before it starts, from the YAML's ``experiment`` section or
from flags.

Its own module because it is its own job: statistics (statsmodels power analysis, through
``assets.experiments.plan``) and their presentation, apart from the pipeline commands.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click
from rich.table import Table

from dagster_project.cli_support import console, resolve_targets

if TYPE_CHECKING:
    from assets.experiments.guardrail_plan import GuardrailPlan
    from assets.experiments.plan import ExperimentPlan
    from configs.schema.stages import ExperimentSpec


@click.group()
def ab() -> None:
    """A/B tests: size an experiment before it starts."""


_PROBABILITY = click.FloatRange(0, 1, min_open=True, max_open=True)


@ab.command(name="plan")
@click.argument("use_case", required=False)
@click.option(
    "--baseline",
    type=float,
    required=True,
    help="Control conversion rate in (0, 1); with --sd, the mean of a continuous metric.",
)
@click.option("--sd", type=float, default=None, help="Standard deviation of a continuous metric.")
@click.option(
    "--mde",
    type=float,
    default=None,
    help="Relative lift to detect, 0.05 = +5% (default: the use case's minimum_detectable_effect).",
)
@click.option(
    "--n",
    "total",
    type=click.IntRange(min=1),
    default=None,
    help="Units over all arms: print the effect they detect instead of the units needed.",
)
@click.option("--alpha", type=_PROBABILITY, default=None, help="Two-sided level (default 0.05).")
@click.option("--power", type=_PROBABILITY, default=None, help="Power (default 0.8).")
@click.option(
    "--ratio",
    type=click.FloatRange(0, min_open=True),
    default=None,
    help="Treatment units per control unit (default 1); a use case's arm weights set it.",
)
@click.option(
    "--correction",
    type=click.Choice(["bonferroni", "none"]),
    default="bonferroni",
    help="With 3+ arms, test each arm against the control at alpha / comparisons.",
)
@click.option(
    "--guardrail",
    "guardrail_spreads",
    multiple=True,
    metavar="NAME=SPREAD|NAME=MEAN:SD",
    help=(
        "A guardrail's spread per unit, in its margin's units (the experiment_analysis asset"
        " reports it as guardrail/<name>/sd_per_unit), or the control mean and per-unit sd it"
        " follows from (SD / MEAN for a relative margin). Repeat per guardrail."
    ),
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def ab_plan(
    use_case: str | None,
    baseline: float,
    sd: float | None,
    mde: float | None,
    total: int | None,
    alpha: float | None,
    power: float | None,
    ratio: float | None,
    correction: str,
    guardrail_spreads: tuple[str, ...],
    as_json: bool,
) -> None:
    """Units per arm to detect a lift (--mde), or the lift that --n units detect.

    USE_CASE (optional, e.g. feed) takes arms, alpha, power and MDE from its experiment section;
    options given on the command line win. The baseline is always given: it changes with traffic.
    Its guardrails are sized too (non-inferiority at their margins, from --guardrail spreads),
    and the binding plan, the one needing the most units, is named.
    """
    from assets.experiments import plan as planning

    if mde is not None and total is not None:
        raise click.UsageError("give --mde or --n, not both")
    if sd is None and not 0 < baseline < 1:
        raise click.BadParameter(
            f"a conversion rate must be in (0, 1), got {baseline} (add --sd for a mean)",
            param_hint="--baseline",
        )
    experiment = None
    if guardrail_spreads and use_case is None:
        raise click.UsageError("--guardrail needs a USE_CASE whose experiment has guardrails")
    if use_case is not None:
        if ratio is not None:
            raise click.UsageError(
                "--ratio is for plans without a use case: its arm weights set it"
            )
        (spec,) = resolve_targets((use_case,), False)
        experiment = spec.experiment
        if experiment is None:
            raise click.ClickException(
                f"use case {spec.name!r} ({spec.path}) has no experiment section"
            )
        weights = {arm.name: arm.weight for arm in experiment.arms}
        alpha = experiment.alpha if alpha is None else alpha
        power = experiment.power if power is None else power
        if total is None:
            mde = experiment.minimum_detectable_effect if mde is None else mde
    else:
        if mde is None and total is None:
            raise click.UsageError("give --mde (to get units) or --n (to get the effect)")
        weights = planning.weights_from_ratio(1.0 if ratio is None else ratio)
    settings = {
        "sd": sd,
        "alpha": 0.05 if alpha is None else alpha,
        "power": 0.8 if power is None else power,
        "correction": correction,
    }
    try:
        if total is not None:
            result = planning.plan_mde(weights, baseline, total, **settings)
        else:
            result = planning.plan_sample_size(weights, baseline, float(mde or 0), **settings)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    guardrails = (
        _guardrail_plans(experiment, weights, guardrail_spreads, settings)
        if experiment is not None
        else []
    )
    _print_ab_plan(
        result, experiment.name if experiment else None, total is not None, guardrails, as_json
    )


def _spreads(
    experiment: ExperimentSpec, given: tuple[str, ...]
) -> dict[str, tuple[float, float | None]]:
    """``--guardrail`` values as guardrail -> (spread per unit in the margin's units, mean)."""
    by_name = {g.label: g for g in experiment.guardrails}
    spreads = {}
    for text in given:
        name, sep, value = text.partition("=")
        if not sep or name not in by_name:
            raise click.BadParameter(
                f"expected NAME=SPREAD or NAME=MEAN:SD with NAME one of {sorted(by_name)},"
                f" got {text!r}",
                param_hint="--guardrail",
            )
        try:
            parts = [float(part) for part in value.split(":")]
        except ValueError:
            parts = []
        if len(parts) == 1:
            spreads[name] = (parts[0], None)
        elif len(parts) == 2 and parts[0] != 0:
            mean, sd = parts
            spreads[name] = (sd / abs(mean) if by_name[name].relative else sd, mean)
        else:
            raise click.BadParameter(
                f"{text!r}: expected a number, or MEAN:SD with a non-zero mean",
                param_hint="--guardrail",
            )
    return spreads


def _guardrail_plans(
    experiment: ExperimentSpec,
    weights: dict[str, float],
    given: tuple[str, ...],
    settings: dict,
) -> list[GuardrailPlan | str]:
    """Each guardrail's plan, or its name where no spread was given."""
    from assets.experiments.guardrail_plan import plan_guardrail

    spreads = _spreads(experiment, given)
    plans: list[GuardrailPlan | str] = []
    for guardrail in experiment.guardrails:
        if guardrail.label not in spreads:
            plans.append(guardrail.label)
            continue
        try:
            plans.append(
                plan_guardrail(
                    weights,
                    guardrail=guardrail.label,
                    kind="quantile" if guardrail.kind == "latency" else "mean",
                    margin=guardrail.max_degradation,
                    relative=guardrail.relative,
                    sd_per_unit=spreads[guardrail.label][0],
                    baseline=spreads[guardrail.label][1],
                    alpha=settings["alpha"],
                    power=settings["power"],
                    guardrails=len(experiment.guardrails),
                    correction=settings["correction"],
                )
            )
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
    return plans


def _binding(plan: ExperimentPlan, guardrails: list[GuardrailPlan | str], solved_mde: bool):
    """(name, units per arm) of the plan needing the most units; the primary's when solved for
    its MDE from a given total (the units are then given, not needed)."""
    from assets.experiments.guardrail_plan import binding

    sized = [g for g in guardrails if not isinstance(g, str)]
    return binding(plan.units, [] if solved_mde else sized)


def _print_ab_plan(
    plan: ExperimentPlan,
    experiment: str | None,
    solved_mde: bool,
    guardrails: list[GuardrailPlan | str],
    as_json: bool,
) -> None:
    """The plan as a table and one sentence, the guardrails' beside it, or all as JSON."""
    binding_name, binding_units = _binding(plan, guardrails, solved_mde)
    if as_json:
        payload = {
            "experiment": experiment,
            "solved_for": "mde" if solved_mde else "sample_size",
            **plan.as_dict(),
            "guardrails": [
                {"guardrail": g, "units": None, "missing": "--guardrail NAME=SPREAD"}
                if isinstance(g, str)
                else g.as_dict()
                for g in guardrails
            ],
            "binding": {
                "plan": binding_name,
                "units": binding_units,
                "total": sum(binding_units.values()),
            },
        }
        click.echo(json.dumps(payload, indent=2, allow_nan=False))
        return
    if plan.metric == "proportion":
        shown = f"{plan.baseline:.2%} -> {plan.baseline * (1 + plan.mde):.2%}"
    else:
        shown = f"mean {plan.baseline:g} -> {plan.baseline * (1 + plan.mde):g}, sd {plan.sd:g}"
    table = Table("arm", "weight", "units", title=f"{experiment or 'A/B test'} ({plan.metric})")
    for arm, units in plan.units.items():
        table.add_row(arm, f"{plan.weights[arm]:.3g}", f"{units:,}")
    table.add_row("total", "1", f"{plan.total:,}")
    console.print(table)
    per_test = (
        f" ({plan.comparison_alpha:.3g} per comparison, Bonferroni)"
        if plan.comparison_alpha != plan.alpha
        else ""
    )
    lead = "minimum detectable effect:" if solved_mde else "units to detect a"
    cohen = "h" if plan.metric == "proportion" else "d"
    console.print(
        f"{lead} {plan.mde:+.2%} relative lift ({shown}) vs {plan.control!r},"
        f" two-sided alpha {plan.alpha:g}{per_test}, power {plan.power:g}"
        f" (Cohen's {cohen} {plan.effect_size:.4f})",
        highlight=False,
    )
    if guardrails:
        _print_guardrails(plan, guardrails, binding_name, binding_units, solved_mde)


def _print_guardrails(
    plan: ExperimentPlan,
    guardrails: list[GuardrailPlan | str],
    name: str,
    units: dict[str, int],
    solved_mde: bool,
) -> None:
    """Per guardrail: its margin, spread and the units it needs, and the binding plan."""
    table = Table(
        "plan",
        "margin",
        "spread / unit",
        *plan.units,
        "total",
        title="guardrails (non-inferiority)",
    )
    table.add_row("primary", f"MDE {plan.mde:+.2%}", "-", *(f"{n:,}" for n in plan.units.values()),
                  f"{plan.total:,}")  # fmt: skip
    for g in guardrails:
        if isinstance(g, str):
            table.add_row(g, "?", "give --guardrail", *("-" for _ in plan.units), "-")
            continue
        margin = f"{g.margin:.2%}" if g.relative else f"{g.margin:g}"
        table.add_row(g.guardrail, margin, f"{g.sd_per_unit:.4g}",
                      *(f"{g.units[arm]:,}" for arm in plan.units), f"{g.total:,}")  # fmt: skip
    console.print(table)
    sized = [g for g in guardrails if not isinstance(g, str)]
    power = (
        f", power {sized[0].power:.3g} each (all pass together >= {plan.power:g})" if sized else ""
    )
    if solved_mde:
        short = [g for g in sized if any(g.units[arm] > n for arm, n in plan.units.items())]
        verdict = (
            f" the {plan.total:,} units given are too few for "
            + ", ".join(f"{g.guardrail} ({g.total:,})" for g in short)
            if short
            else f" the {plan.total:,} units given cover every guardrail sized"
        )
    else:
        verdict = f" binding: {name} ({sum(units.values()):,} units)"
    console.print(
        f"one-sided alpha {plan.comparison_alpha:g} per guardrail{power};{verdict}", highlight=False
    )
