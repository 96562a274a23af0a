"""The ``playbook`` command: validate, list, scaffold and materialize use cases.

``materialize`` runs in-process against the Dagster instance in the home directory, so what it
materializes is what ``dagster dev`` shows afterwards.
"""

from __future__ import annotations

import json
import os
import re
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from configs import CONFIG_DIR
from configs.schema import SpecError, UseCaseSpec
from dagster_project.loader import config_dir, config_paths, load_use_cases

if TYPE_CHECKING:
    from assets.experiments.plan import ExperimentPlan

# A pipe or CI log is not a terminal: use a width that fits asset names rather than 80 columns.
console = Console(width=None if sys.stdout.isatty() else 160)
TEMPLATES = ("feed", "fraud", "search")


def _load_or_exit(paths: list[str] | None) -> list[UseCaseSpec]:
    try:
        return load_use_cases(paths or None)
    except SpecError as exc:
        console.print(f"[red]invalid configuration[/red]\n{exc}", highlight=False, soft_wrap=True)
        sys.exit(1)


@click.group()
def main() -> None:
    """Playbook: ML systems from one YAML file per use case."""
    import dagster as dg

    # Beta/preview notices are for library authors; the CLI's output is the summary table.
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)


@main.command()
@click.argument("paths", nargs=-1, type=click.Path())
def validate(paths: tuple[str, ...]) -> None:
    """Validate use-case YAML files (default: every file in the configs folder)."""
    specs = _load_or_exit(list(paths))
    for spec in specs:
        console.print(f"[green]ok[/green] {spec.path}: use case {spec.name!r}", highlight=False)


@main.command(name="list")
def list_use_cases() -> None:
    """List the use cases in the configs folder."""
    specs = _load_or_exit(None)
    table = Table("name", "source", "entities", "labels", "models", "file")
    for spec in specs:
        table.add_row(*spec.summary().values())
    console.print(table)


@main.command()
@click.argument("name")
@click.option(
    "--from",
    "template",
    type=click.Choice(TEMPLATES),
    required=True,
    help="Shipped use case to copy.",
)
@click.option(
    "--dir",
    "folder",
    type=click.Path(file_okay=False),
    default=None,
    help="Where to write NAME.yaml.",
)
def new(name: str, template: str, folder: str | None) -> None:
    """Scaffold configs/NAME.yaml from a shipped use case; the result validates as is."""
    target = Path(folder or config_dir()) / f"{name}.yaml"
    if target.exists():
        raise click.ClickException(f"{target} already exists")
    if not re.match(r"^[a-z][a-z0-9_]{0,62}$", name):
        raise click.ClickException(
            f"name {name!r}: expected lowercase letters, digits and underscores"
        )
    text = (CONFIG_DIR / f"{template}.yaml").read_text(encoding="utf-8")
    text = re.sub(r"^name: .*$", f"name: {name}", text, count=1, flags=re.M)
    text = text.replace(
        "$schema=./playbook.schema.json", f"$schema={CONFIG_DIR / 'playbook.schema.json'}"
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    _load_or_exit([str(target)])
    console.print(
        f"[green]created[/green] {target} (from {template}.yaml); edit its source section next",
        highlight=False,
    )


@main.command()
@click.option("--output", type=click.Path(dir_okay=False), default=None, help="Default: stdout.")
def schema(output: str | None) -> None:
    """Write the JSON Schema of a use-case file (for editor completion)."""
    from configs.schema.json_schema import json_schema

    text = json.dumps(json_schema(), indent=2) + "\n"
    if output:
        Path(output).write_text(text, encoding="utf-8")
    else:
        click.echo(text, nl=False)


def _resolve_targets(targets: tuple[str, ...], every: bool) -> list[UseCaseSpec]:
    if every or not targets:
        return _load_or_exit(None)
    paths = []
    for target in targets:
        path = Path(target)
        paths.append(path if path.suffix in (".yaml", ".yml") else config_dir() / f"{target}.yaml")
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        known = ", ".join(p.stem for p in config_paths())
        raise click.ClickException(
            f"no such use case or file: {', '.join(missing)} (known: {known})"
        )
    return _load_or_exit([str(p) for p in paths])


@main.command()
@click.argument("targets", nargs=-1)
@click.option("--all", "every", is_flag=True, help="Every use case in the configs folder.")
@click.option("--select", multiple=True, help="Asset name(s) to materialize, e.g. raw_events.")
@click.option(
    "--home",
    type=click.Path(),
    default=None,
    help="State folder (default $PLAYBOOK_HOME or ./.playbook).",
)
def materialize(
    targets: tuple[str, ...], every: bool, select: tuple[str, ...], home: str | None
) -> None:
    """Materialize use cases (names or YAML paths) in-process, with progress and a summary."""
    import dagster as dg

    from dagster_project.materialize import materialize_use_case
    from resources.home import dagster_home, playbook_home
    from runtime.layout import HOME_ENV

    specs = _resolve_targets(targets, every)
    resolved = playbook_home(home)
    os.environ[HOME_ENV] = str(resolved)
    os.environ["DAGSTER_HOME"] = str(dagster_home(resolved))
    summary = Table(
        "asset", "status", "partitions", "rows", "seconds", "checks", title=f"home: {resolved}"
    )
    failures = 0
    with (
        dg.DagsterInstance.get() as instance,
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
            console=console,
        ) as progress,
    ):
        for spec in specs:
            from dagster_project.loader import use_case_assets

            total = len(select) if select else len(use_case_assets(spec))
            task = progress.add_task(f"{spec.name}", total=total)

            def on_step(step, task=task) -> None:
                progress.update(task, advance=1, description=f"{step.asset}")

            try:
                steps = materialize_use_case(spec, instance, str(resolved), list(select), on_step)
            except ValueError as exc:
                raise click.ClickException(str(exc)) from None
            for step in steps:
                failures += step.stops_the_run
                colour = (
                    "green" if step.status == "ok" else "red" if step.stops_the_run else "yellow"
                )
                checks = ", ".join(f"{k}:{'pass' if v else 'FAIL'}" for k, v in step.checks.items())
                summary.add_row(
                    step.asset,
                    f"[{colour}]{step.status}[/{colour}]"
                    + (f" ({step.error})" if step.error else ""),
                    str(step.partitions or "-"),
                    "-" if step.rows is None else f"{step.rows:,}",
                    f"{step.seconds:.1f}",
                    checks,
                )
    console.print(summary)
    if failures:
        sys.exit(1)


@main.command()
@click.argument("target")
@click.option(
    "--home",
    type=click.Path(),
    default=None,
    help="State folder (default $PLAYBOOK_HOME or ./.playbook).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def report(target: str, home: str | None, as_json: bool) -> None:
    """Latest evaluation of each model beside its baseline, registry aliases and the gate."""
    import json

    import dagster as dg

    from dagster_project import report as reporting
    from resources.home import dagster_home, playbook_home
    from resources.mlflow_resource import MLflowResource

    (spec,) = _resolve_targets((target,), False)
    resolved = playbook_home(home)
    os.environ["DAGSTER_HOME"] = str(dagster_home(resolved))
    with dg.DagsterInstance.get() as instance:
        reports = reporting.model_reports(spec, instance, MLflowResource(home=str(resolved)))
    if as_json:
        click.echo(json.dumps(reporting.as_json(reports), indent=2, default=str))
        return
    for item in reports:
        if not item.materialized:
            console.print(f"[yellow]{spec.name}/{item.model}[/yellow]: not trained yet")
            continue
        table = Table(
            "metric",
            "model",
            "baseline",
            "delta",
            title=(
                f"{spec.name}/{item.model} ({item.problem}) - version {item.version};"
                f" champion {item.aliases.get('champion', '-')},"
                f" challenger {item.aliases.get('challenger', '-')};"
                f" versions {', '.join(item.versions) or '-'}"
            ),
        )
        for row in item.metrics:
            primary = " *" if row["metric"] == item.primary_metric else ""
            table.add_row(
                row["metric"] + primary,
                f"{row['model']:.4f}",
                f"{row['baseline']:.4f}" if "baseline" in row else "-",
                f"{row['delta']:+.4f}" if "delta" in row else "-",
            )
        console.print(table)
        verdict = "promoted" if item.gate_passed else "kept the champion"
        console.print(f"  gate: {verdict} - {item.gate}")


@main.group()
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
        (spec,) = _resolve_targets((use_case,), False)
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
