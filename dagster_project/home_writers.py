"""One writer per home and use case, for the ``playbook`` commands that write to a home.

Two kinds of writer can meet on a use case: a ``playbook`` command (in-process runs) and a run
Dagster launched (UI, schedule, sensor; a run worker per run). Each kind is kept to one at a time
by its own mechanism, and each looks at the other:

* commands take the use case's OS lock (:class:`dagster_project.cli_support.UseCaseWriter`)
  for as long as they run, so a second command stops at once with a message naming the holder
  (or, with ``--wait``, waits for it);
* Dagster's run queue starts one run per use case at a time (the ``playbook/use_case`` tag limit
  that :func:`resources.home.instance_settings` writes into ``dagster.yaml``); the runs a command
  executes carry that tag too, so the queue holds its runs while a command's run is in progress;
* before each run, a command checks that no run Dagster launched for the use case is in
  progress (:func:`wait_for_dagster_runs`), and stops (or waits) if one is.

Before any of that, the runs left unfinished by processes that died are marked failed
(:func:`resources.run_workers.fail_dead_runs`), so a killed command does not block the next.
"""

from __future__ import annotations

import time

import dagster as dg
from rich.markup import escape

from dagster_project.cli_support import WAIT_HINT, UseCaseBusy, UseCaseWriter, console
from resources.home import USE_CASE_RUN_TAG
from resources.run_workers import fail_dead_runs

POLL_S = 2.0
ACTIVE = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]


def report_dead_runs(instance: dg.DagsterInstance, echo: bool = True) -> None:
    """Mark the runs whose process died as failed, and (with ``echo``) say so."""
    for dead in fail_dead_runs(instance):
        if echo:
            console.print(
                f"[yellow]run {dead.run_id} ({dead.job_name}) was left unfinished: its process"
                f" is gone ({escape(dead.reason)}); marked failed[/yellow]",
                highlight=False,
            )


def _describe(run: dg.DagsterRun) -> str:
    launched = run.tags.get("playbook/reason") or run.tags.get("dagster/sensor_name")
    launched = launched or run.tags.get("dagster/schedule_name") or "launched from Dagster"
    return f"run {run.run_id} of {run.job_name} ({run.status.value}, {launched})"


def _in_progress(instance: dg.DagsterInstance, use_case: str) -> dg.DagsterRun | None:
    filters = dg.RunsFilter(statuses=ACTIVE, tags={USE_CASE_RUN_TAG: use_case})
    runs = instance.get_runs(filters=filters, limit=1)
    return runs[0] if runs else None


def wait_for_dagster_runs(
    instance: dg.DagsterInstance, use_case: str, writer: UseCaseWriter
) -> None:
    """Return once no run of ``use_case`` is in progress; raises :class:`UseCaseBusy` naming
    the run when one is and the command does not ``wait``.

    Called with the use case's lock held, between the command's own runs (which have ended),
    so any run in progress was launched by Dagster. While waiting for it the command lets go
    of its locks, which that run may be waiting for.
    """
    run = _in_progress(instance, use_case)
    while run is not None:
        message = f"use case {use_case!r} on home {writer.home} has a Dagster {_describe(run)}"
        if not writer.wait:
            raise UseCaseBusy(f"{message}; {WAIT_HINT}")
        with writer.released():
            console.print(f"[yellow]waiting: {escape(message)}[/yellow]", highlight=False)
            while _in_progress(instance, use_case) is not None:
                time.sleep(POLL_S)
        run = _in_progress(instance, use_case)
