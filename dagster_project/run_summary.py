"""The end of ``playbook materialize``: what failed, one line each, then a one-line verdict.

The summary table of a use case is 20-40 rows; a failed check hides in its last column, and a
non-blocking check that failed (a model that kept the champion, a funnel that did not beat the
popular list) changes neither the exit status nor the colour of the run. So the output ends with
what needs a look, in the order it ran, and a verdict a log reader or a CI step can
grep. A failed check's line ends with the check's own one-line description when the step carries
it (``feed/funnel_evaluation: check beats_popular_list failed (warning): recall@20: funnel 0.086
vs popular list 0.111``), so the number that failed is on the terminal, not only in the UI. Plain
functions over the step results, without Dagster, so they are tested on their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class Step(Protocol):
    """What the summary reads of ``dagster_project.materialize.StepResult`` (importing that
    module imports Dagster and every asset factory)."""

    asset: str
    status: str
    checks: dict[str, bool]
    check_severity: dict[str, str]  # check -> "blocking" or "warning"
    error: str | None
    blocking: bool


def check_notes(step: Step) -> dict[str, str]:
    """Per check, its ``AssetCheckEvaluation.description`` if the step kept it (``check_notes``,
    filled by ``materialize_use_case``); a step without the attribute has none."""
    return dict(getattr(step, "check_notes", None) or {})


@dataclass(frozen=True)
class Problem:
    """One line of the end summary; ``stops`` when it is why the command exits 1."""

    text: str
    stops: bool


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _stops(step: Step, check: str) -> bool:
    """Whether a failed check is blocking; without its severity, the step's own flag."""
    severity = step.check_severity.get(check)
    return step.blocking if severity is None else severity == "blocking"


def problems(steps: Sequence[Step]) -> list[Problem]:
    """A line per failed asset and per failed check, and one for the assets skipped because of
    them. A failed check is marked ``(blocking)`` (it stops what depends on the asset and the
    exit status) or ``(warning)`` (reported only), or unmarked if its severity is unknown."""
    found: list[Problem] = []
    skipped: list[str] = []
    for step in steps:
        notes = check_notes(step)
        if step.status == "skipped":
            skipped.append(step.asset)
            continue
        if step.status == "failed":
            found.append(Problem(f"{step.asset}: failed: {step.error or 'run failed'}", True))
        for name, passed in step.checks.items():
            if not passed:
                severity = step.check_severity.get(name)
                marked = f" ({severity})" if severity else ""
                note = f": {notes[name]}" if notes.get(name) else ""
                found.append(
                    Problem(f"{step.asset}: check {name} failed{marked}{note}", _stops(step, name))
                )
    if skipped:
        found.append(
            Problem(
                "skipped, as an upstream asset failed or failed a blocking check: "
                + ", ".join(skipped),
                True,
            )
        )
    return found


def verdict(steps: Sequence[Step]) -> str:
    """``all N assets ok, all checks passed``, or the counts of what did not go well."""
    failed = sum(step.status == "failed" for step in steps)
    skipped = sum(step.status == "skipped" for step in steps)
    checks = [(step, n) for step in steps for n, passed in step.checks.items() if not passed]
    parts = []
    if failed:
        parts.append(f"{_plural(failed, 'asset')} failed")
    if skipped:
        parts.append(f"{skipped if failed else _plural(skipped, 'asset')} skipped")
    if not parts:
        state = "ok" if all(step.status == "ok" for step in steps) else "materialized"
        parts.append(f"all {_plural(len(steps), 'asset')} {state}")
    if checks:
        stopping = sum(_stops(step, name) for step, name in checks)
        parts.append(
            f"{_plural(len(checks), 'check')} failed"
            + (f" ({stopping} blocking)" if stopping else "")
        )
    else:
        parts.append("all checks passed")
    return ", ".join(parts)
