"""How a problem with a use-case YAML is located and worded, at validate time and at run time.

The loader reports ``FILE:LINE: field.path: message`` for every problem it finds, and keeps the
line of every field on the spec it returns, so a problem found later, while materializing (a file
that does not parse as its ``timestamp_unit`` says), is reported the same way and names the same
line. Lists of candidate names are cut short: a LETOR file has hundreds of feature columns, and
a message listing all of them hides the one line that matters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

Loc = tuple[str | int, ...]
SHOWN_NAMES = 10  # names listed in a message before it says how many more there are


@dataclass(frozen=True)
class SpecIssue:
    """One problem in one file, located as precisely as the YAML allows."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.field or '<root>'}: {self.message}"


class SpecError(ValueError):
    """Raised with every problem found; ``str()`` is the report a user reads."""

    def __init__(self, issues: Sequence[SpecIssue]):
        self.issues = list(issues)
        files = sorted({issue.file for issue in self.issues})
        head = f"{len(self.issues)} problem(s) in {', '.join(files)}:"
        super().__init__("\n".join([head, *(f"  {issue}" for issue in self.issues)]))


class SpecFieldError(ValueError):
    """A problem found while running a use case that a field of its YAML causes.

    One line, ``FILE:LINE: field.path: message``, so a run's summary (which shows the first line
    of an error) points at what to edit.
    """

    def __init__(self, issue: SpecIssue):
        super().__init__(str(issue))
        self.issue = issue


def dotted(loc: Loc) -> str:
    """``("source", "tables", "events", "path")`` -> ``source.tables.events.path``."""
    return ".".join(str(part) for part in loc)


def line_of(lines: dict[Loc, int], loc: Loc) -> int | None:
    """Line of the deepest existing prefix of ``loc`` (a missing key points at its parent)."""
    for end in range(len(loc), 0, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return 1 if loc and lines else None


def short_list(names: Sequence[str], limit: int = SHOWN_NAMES) -> str:
    """``a, b, c, ... (218 in all)``: the first ``limit`` names and how many there are."""
    if not names:
        return "none"
    shown = ", ".join(str(name) for name in names[:limit])
    return shown if len(names) <= limit else f"{shown}, ... ({len(names)} in all)"
