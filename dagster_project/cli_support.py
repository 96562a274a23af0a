"""What every ``playbook`` command shares: the console, and turning names or paths into specs.

An invalid YAML ends the command with the loader's ``FILE:LINE: field: message`` lines and exit
status 1, never a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console

from configs.schema import SpecError, UseCaseSpec
from dagster_project.loader import config_dir, config_paths, load_use_cases

# A pipe or CI log is not a terminal: use a width that fits asset names rather than 80 columns.
console = Console(width=None if sys.stdout.isatty() else 160)


def load_or_exit(paths: list[str] | None) -> list[UseCaseSpec]:
    try:
        return load_use_cases(paths or None)
    except SpecError as exc:
        console.print(f"[red]invalid configuration[/red]\n{exc}", highlight=False, soft_wrap=True)
        sys.exit(1)


def resolve_targets(targets: tuple[str, ...], every: bool) -> list[UseCaseSpec]:
    if every or not targets:
        return load_or_exit(None)
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
    return load_or_exit([str(p) for p in paths])
