"""What every ``playbook`` command shares: the console, turning names or paths into specs, and
keeping the output to what a user can act on.

An invalid YAML ends the command with the loader's ``FILE:LINE: field: message`` lines and exit
status 1, never a traceback. Nothing here imports Dagster or an asset factory: the commands that
only read YAML (``list``, ``validate``, ``new``, ``schema``) must answer in about a second, so the
heavy imports live inside the commands that run or inspect the pipeline.
"""

from __future__ import annotations

import os
import re
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import click
from rich.console import Console
from rich.markup import escape

from configs import use_case_dir
from configs.schema import SpecError, UseCaseSpec, load_specs
from configs.schema.consistency import Problem
from configs.schema.source import FileSource
from dagster_project.use_case_files import config_paths, file_source_problems, load_use_cases
from runtime.home_lock import HomeBusy, writer_lock

# A pipe or CI log is not a terminal: use a width that fits asset names rather than 80 columns.
console = Console(width=None if sys.stdout.isatty() else 160)


def file_value_problems(spec: UseCaseSpec) -> Iterator[Problem]:
    """``playbook validate``'s thorough file checks (every value parses), imported only for a
    spec that reads files: they need pandas."""
    if not isinstance(spec.source, FileSource):
        return
    from assets.raw.value_checks import file_value_problems as check_values

    yield from check_values(spec)


def load_or_exit(paths: list[str] | None, thorough: bool = False) -> list[UseCaseSpec]:
    """Load the files or folders named (default: ``configs.use_case_dir()``), or exit 1.

    ``thorough`` adds the checks that read whole data files (``validate`` asks for them; a
    command about to read the files anyway does not).
    """
    try:
        if thorough:
            checks = [file_source_problems, file_value_problems]
            return load_specs(config_paths(paths or [use_case_dir()]), extra_checks=checks)
        return load_use_cases(paths or [use_case_dir()])
    except SpecError as exc:
        console.print(f"[red]invalid configuration[/red]\n{exc}", highlight=False, soft_wrap=True)
        sys.exit(1)


def resolve_targets(targets: tuple[str, ...], every: bool) -> list[UseCaseSpec]:
    if every or not targets:
        return load_or_exit(None)
    paths = []
    for target in targets:
        path = Path(target)
        paths.append(
            path if path.suffix in (".yaml", ".yml") else use_case_dir() / f"{target}.yaml"
        )
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        known = ", ".join(p.stem for p in config_paths([use_case_dir()]))
        raise click.ClickException(
            f"no such use case or file: {', '.join(missing)} (known: {known})"
        )
    return load_or_exit([str(p) for p in paths])


# ---------------------------------------------------------------- one writer per use case

# EX_TEMPFAIL from sysexits.h, "try again later": a script can tell "busy" from "failed"
BUSY_EXIT_CODE = 75
WAIT_HINT = "run it again when that ends, or pass --wait to wait for it"


class UseCaseBusy(click.ClickException):
    """Another writer has the use case: one line on stderr, exit status 75."""

    exit_code = BUSY_EXIT_CODE


def _waiting(busy: HomeBusy) -> None:
    console.print(f"[yellow]waiting: {escape(str(busy))}[/yellow]", highlight=False)


class UseCaseWriter:
    """The home locks of a command's use cases (:func:`runtime.home_lock.writer_lock`), held
    from ``with`` to its end; raises :class:`UseCaseBusy` when another process holds one and
    ``wait`` is false.

    Taken before Dagster is even imported, so a second writer hears who holds the use case in
    about a second, having touched nothing. In name order, so that two commands waiting for
    each other's use cases cannot deadlock. :meth:`released` lets go of them for a while: a
    command that waits for a run Dagster launched must not hold what that run may wait for.
    """

    def __init__(self, home: str | os.PathLike[str], names: Iterable[str], wait: bool) -> None:
        self.home, self.names, self.wait = home, sorted(set(names)), wait
        self._held: ExitStack | None = None

    def _acquire(self) -> None:
        with ExitStack() as stack:
            for name in self.names:
                try:
                    lock = writer_lock(self.home, name, wait=self.wait, on_wait=_waiting)
                    stack.enter_context(lock)
                except HomeBusy as busy:
                    raise UseCaseBusy(f"{busy}; {WAIT_HINT}") from None
            self._held = stack.pop_all()

    def _release(self) -> None:
        if self._held is not None:
            self._held.close()
            self._held = None

    def __enter__(self) -> UseCaseWriter:
        self._acquire()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._release()

    @contextmanager
    def released(self) -> Iterator[None]:
        """Without the locks for the ``with`` block; taken again (waiting) after it."""
        self._release()
        try:
            yield
        finally:
            self._acquire()


# ---------------------------------------------------------------- warnings


@dataclass(frozen=True)
class Noise:
    """A warning a Playbook user cannot act on: raised inside a library, about that library's use
    of another one. ``package`` is the top-level package whose code raises it (``None``: any),
    ``message`` a regex matched at the start of the text, as ``warnings.filterwarnings`` does."""

    category: type[Warning]
    message: str = ""
    package: str | None = None

    def matches(self, message: Warning | str, category: type[Warning], filename: str) -> bool:
        return (
            issubclass(category, self.category)
            and re.match(self.message, str(message), re.IGNORECASE) is not None
            and (self.package is None or self.package in Path(filename).parts)
        )


THIRD_PARTY_NOISE = (
    # BentoML builds its .bentoignore matcher with pathspec's old "gitwildmatch" name.
    Noise(DeprecationWarning, r"GitWildMatchPattern \('gitwildmatch'\) is deprecated", "pathspec"),
    # BentoML's SDK overrides pydantic's __get_pydantic_core_schema__, deprecated in pydantic 2.11.
    Noise(
        DeprecationWarning,
        r"The `__get_pydantic_core_schema__` method of the `BaseModel` class is deprecated",
        "_bentoml_sdk",
    ),
    # MLflow's tracking store asks SQLAlchemy 2 for its deprecated "noload" loader strategy.
    Noise(DeprecationWarning, r"The ``noload`` loader strategy is deprecated", "mlflow"),
)

_silenced: list[Noise] = []


class _NoiseGuard:
    """``warnings.showwarning`` that drops silenced noise and shows everything else.

    The filters alone are not enough: a library may put its own filter in front of ours when it
    is imported (Feast runs ``warnings.simplefilter("once", DeprecationWarning)`` in several
    modules), and the heavy libraries are imported lazily, after the entry point has set ours.
    Dropping at display time keeps the noise out whatever the order of the filter list.
    """

    def __init__(self, shown: Callable[..., None]) -> None:
        self.shown = shown

    def __call__(
        self,
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        if any(noise.matches(message, category, filename) for noise in _silenced):
            return
        self.shown(message, category, filename, lineno, file, line)


def silence(*noises: Noise) -> None:
    """Ignore exactly these warnings (by category, message and raising package), nothing else.

    Call it again after importing a library that resets the warning filters: it puts ours back
    in front. Our own warnings and any library warning not listed still reach the user.
    """
    for noise in noises:
        module = rf"{re.escape(noise.package)}(\.|$)" if noise.package else ""
        warnings.filterwarnings("ignore", noise.message, noise.category, module)
        if noise not in _silenced:
            _silenced.append(noise)
    if not isinstance(warnings.showwarning, _NoiseGuard):
        warnings.showwarning = _NoiseGuard(warnings.showwarning)


def silence_dagster_notices() -> None:
    """Dagster's beta and preview notices are for library authors; the CLI's output is its
    summary. Imports Dagster, so only the commands that already need it call this."""
    import dagster as dg

    silence(*THIRD_PARTY_NOISE, Noise(dg.BetaWarning), Noise(dg.PreviewWarning))


# ---------------------------------------------------------------- colour in logs


@contextmanager
def plain_stdout() -> Iterator[None]:
    """Strip ANSI colour codes from what libraries print while stdout is not a terminal.

    Feast prints its ``Materializing N feature views ...`` lines with colorama's constants
    (``Fore.GREEN``), which are raw escape sequences whatever the output is; no environment
    variable turns them off (colorama reads none, and Feast does not ask it whether stdout is a
    terminal). Piped into a log they show as ``\\x1b[32m``. Colorama's own stream wrapper strips
    them; on a terminal the colours stay.
    """
    if sys.stdout.isatty():
        yield
        return
    try:
        from colorama.ansitowin32 import AnsiToWin32
    except ImportError:  # Feast depends on colorama: without it, nothing prints its codes
        yield
        return
    original = sys.stdout
    sys.stdout = AnsiToWin32(original, convert=False, strip=True, autoreset=False).stream
    try:
        yield
    finally:
        sys.stdout = original
