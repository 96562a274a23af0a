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
    from assets.experiments.plan import ExperimentPlan


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
    as_json: bool,
) -> None:
    """Units per arm to detect a lift (--mde), or the lift that --n units detect.

    USE_CASE (optional, e.g. feed) takes arms, alpha, power and MDE from its experiment section;
    options given on the command line win. The baseline is always given: it changes with traffic.
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
    _print_ab_plan(result, experiment.name if experiment else None, total is not None, as_json)


def _print_ab_plan(
    plan: ExperimentPlan, experiment: str | None, solved_mde: bool, as_json: bool
) -> None:
    """The plan as a table and one sentence, or as JSON."""
    if as_json:
        payload = {
            "experiment": experiment,
            "solved_for": "mde" if solved_mde else "sample_size",
            **plan.as_dict(),
        }
        click.echo(json.dumps(payload, indent=2))
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
