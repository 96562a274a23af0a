"""The ``playbook`` command: validate, list, scaffold and materialize use cases.

``materialize`` runs in-process against the Dagster instance in the home directory, so what it
materializes is what ``dagster dev`` shows afterwards.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from configs import CONFIG_DIR, CONFIGS_ENV, project_config_dir
from dagster_project.ab_cli import ab
from dagster_project.cli_support import (
    THIRD_PARTY_NOISE,
    UseCaseWriter,
    console,
    load_or_exit,
    plain_stdout,
    resolve_targets,
    silence,
    silence_dagster_notices,
)
from dagster_project.run_summary import problems, verdict
from runtime.layout import home_location

if TYPE_CHECKING:
    from dagster import DagsterInstance

    from configs.schema import UseCaseSpec
    from dagster_project.materialize import StepResult

# every shipped use case is a template: a new configs/<name>.yaml is one more
TEMPLATES = tuple(sorted(path.stem for path in CONFIG_DIR.glob("*.yaml")))


@click.group()
def main() -> None:
    """Playbook: ML systems from one YAML file per use case."""
    # Dagster, Feast, MLflow and BentoML are imported by the commands that use them, never here:
    # `list` or `validate` must not wait 10-20 s for them (tests/unit/test_cli_imports.py).
    silence(*THIRD_PARTY_NOISE)


@main.command()
@click.argument("paths", nargs=-1, type=click.Path())
def validate(paths: tuple[str, ...]) -> None:
    """Validate use-case YAML files (default: every file in the configs folder).

    The configs folder is $PLAYBOOK_CONFIGS, else ./configs when it holds YAML files, else the
    shipped examples. Beyond what every load checks, every value a run parses as the YAML says
    (timestamps, derive sources, libsvm lines) is read, a block at a time.
    """
    specs = load_or_exit(list(paths), thorough=True)
    for spec in specs:
        console.print(f"[green]ok[/green] {spec.path}: use case {spec.name!r}", highlight=False)


@main.command(name="list")
def list_use_cases() -> None:
    """List the use cases in the configs folder."""
    specs = load_or_exit(None)
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
    help=f"Where to write NAME.yaml (default: ${CONFIGS_ENV}, else ./configs).",
)
def new(name: str, template: str, folder: str | None) -> None:
    """Scaffold configs/NAME.yaml in the current project from a shipped use case.

    The file validates as is. It goes to ``./configs`` (created if needed), or to the folder
    ``$PLAYBOOK_CONFIGS`` names, never into the installed package.
    """
    target = Path(folder) if folder else project_config_dir()
    target = target / f"{name}.yaml"
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
    load_or_exit([str(target)])
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
@click.option(
    "--wait",
    is_flag=True,
    help="When another process is writing one of these use cases on this home (a playbook"
    " command, or a run launched from Dagster), wait for it instead of exiting with status 75.",
)
def materialize(
    targets: tuple[str, ...], every: bool, select: tuple[str, ...], home: str | None, wait: bool
) -> None:
    """Materialize use cases (names or YAML paths) in-process, with progress and a summary.

    One writer per home and use case: while another process writes one of them, this exits
    with status 75 and a line naming it, having changed nothing (or waits, with --wait).
    """
    specs = resolve_targets(targets, every)
    with UseCaseWriter(home_location(home), [spec.name for spec in specs], wait) as writer:
        steps = _materialize_locked(specs, home, list(select), writer)
    for problem in problems(steps):
        colour = "red" if problem.stops else "yellow"
        console.print(f"[{colour}]{escape(problem.text)}[/{colour}]", highlight=False)
    failed = any(step.stops_the_run for step in steps)
    checks_failed = any(not passed for step in steps for passed in step.checks.values())
    colour = "red" if failed else "yellow" if checks_failed else "green"
    console.print(f"[{colour}]{verdict(steps)}[/{colour}]", highlight=False)
    if failed:
        sys.exit(1)


def _materialize_locked(
    specs: list[UseCaseSpec], home: str | None, select: list[str], writer: UseCaseWriter
) -> list[StepResult]:
    """The materialization itself, once the use cases' locks are held: fail the runs dead
    processes left, wait for none of Dagster's, run, print the summary table."""
    import dagster as dg

    from dagster_project.home_writers import report_dead_runs, wait_for_dagster_runs
    from resources.home import dagster_home, playbook_home
    from runtime.layout import HOME_ENV

    silence_dagster_notices()  # after the imports above: Feast and MLflow reset the filters
    resolved = playbook_home(home)
    os.environ[HOME_ENV] = str(resolved)
    os.environ["DAGSTER_HOME"] = str(dagster_home(resolved))
    summary = Table(
        "asset", "status", "partitions", "rows", "seconds", "checks", title=f"home: {resolved}"
    )
    steps: list[StepResult] = []
    with dg.DagsterInstance.get() as instance:
        report_dead_runs(instance)
        for spec in specs:  # nothing runs while Dagster runs one of them
            wait_for_dagster_runs(instance, spec.name, writer)
        _materialize_all(specs, instance, str(resolved), select, writer, summary, steps)
    console.print(summary)
    return steps


def _materialize_all(
    specs: list[UseCaseSpec],
    instance: DagsterInstance,
    home: str,
    select: list[str],
    writer: UseCaseWriter,
    summary: Table,
    steps: list[StepResult],
) -> None:
    """Run every use case's assets behind a progress bar, filling ``summary`` and ``steps``."""
    from dagster_project.home_writers import wait_for_dagster_runs
    from dagster_project.loader import use_case_assets
    from dagster_project.materialize import materialize_use_case

    with (
        plain_stdout(),
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
            console=console,
        ) as progress,
    ):
        for spec in specs:
            total = len(select) if select else len(use_case_assets(spec))
            task = progress.add_task(f"{spec.name}", total=total)

            def on_step(step: StepResult, task: TaskID = task) -> None:
                progress.update(task, advance=1, description=f"{step.asset}")

            def before_run(_asset: str, name: str = spec.name) -> None:
                wait_for_dagster_runs(instance, name, writer)

            try:
                done = materialize_use_case(spec, instance, home, select, on_step, before_run)
            except ValueError as exc:
                raise click.ClickException(str(exc)) from None
            steps.extend(done)
            for step in done:
                summary.add_row(*_summary_row(step))


def _summary_row(step: StepResult) -> tuple[str, ...]:
    """One asset's row of the summary table: status coloured by how much it matters."""
    colour = "green" if step.status == "ok" else "red" if step.stops_the_run else "yellow"
    checks = ", ".join(f"{k}:{'pass' if v else 'FAIL'}" for k, v in step.checks.items())
    error = f" ({escape(step.error)})" if step.error else ""
    return (
        step.asset,
        f"[{colour}]{step.status}[/{colour}]{error}",
        str(step.partitions or "-"),
        "-" if step.rows is None else f"{step.rows:,}",
        f"{step.seconds:.1f}",
        checks,
    )


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
    import dagster as dg

    from dagster_project import report as reporting
    from dagster_project.home_writers import report_dead_runs
    from resources.home import dagster_home, playbook_home
    from resources.mlflow_resource import MLflowResource

    silence_dagster_notices()
    (spec,) = resolve_targets((target,), False)
    resolved = playbook_home(home)
    os.environ["DAGSTER_HOME"] = str(dagster_home(resolved))
    with dg.DagsterInstance.get() as instance:
        report_dead_runs(instance, echo=not as_json)  # stdout is the JSON then
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
        gate = "promoted" if item.gate_passed else "kept the champion"
        console.print(f"  gate: {gate} - {item.gate}")


main.add_command(ab)
