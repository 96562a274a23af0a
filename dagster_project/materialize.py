"""Materialize a use case in-process, asset by asset, and summarise what happened.

One run per asset (in dependency order) gives a live progress display and lets a failed or
blocked asset stop only what depends on it. A partitioned asset is run over all its partitions
at once through Dagster's partition-range tags, which the single-run backfill policy allows.

Each run is a subset (one asset and its checks) of its stage's job, ``<use case>__<stage>``
(:mod:`dagster_project.jobs`), resolved from the same Definitions the ``playbook`` code location
builds, and recorded as a run of that location (:mod:`dagster_project.location_runs`): the UI
lists it under the job and re-executes it, and :func:`reexecute` does the same from Python.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import dagster as dg

from configs.schema import UseCaseSpec
from dagster_project.jobs import asset_stage, stage_job_name
from dagster_project.loader import use_case_assets, use_case_definitions
from dagster_project.location_runs import execute_asset_in_location
from resources.run_workers import WORKER_TAG

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
# Step-by-step DEBUG events belong in the Dagster UI, not on the terminal behind a progress bar.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
REASON_TAG = "playbook/reason"  # as the schedule and sensors tag their runs
# tags a re-execution keeps from its parent: ours and the partition range it covered
KEPT_ON_REEXECUTION = (RANGE_START, RANGE_END, "dagster/partition")


@dataclass
class StepResult:
    """Outcome of materializing one asset."""

    asset: str
    status: str  # "ok", "failed", "check failed", "skipped"
    seconds: float = 0.0
    partitions: int = 0
    rows: int | None = None
    checks: dict[str, bool] = field(default_factory=dict)
    error: str | None = None
    # a check's own one-line description (its figures), shown on the summary line
    check_notes: dict[str, str] = field(default_factory=dict)
    blocking: bool = False  # failed, skipped, or a blocking check failed: stops what follows
    # per evaluated check: "blocking" (a failure stops what depends on the asset) or "warning"
    check_severity: dict[str, str] = field(default_factory=dict)
    job: str | None = None  # the stage job the run belongs to (``fraud__models``)
    run_id: str | None = None  # the Dagster run, for the UI or :func:`reexecute`

    @property
    def stops_the_run(self) -> bool:
        """Whether this step makes ``playbook materialize`` exit non-zero (a failed
        non-blocking check, such as a gate that kept the champion, is reported only)."""
        return self.blocking or self.status in ("failed", "skipped")


def _asset_key(asset: dg.AssetsDefinition) -> dg.AssetKey:
    return next(iter(asset.keys))


def _selected(
    assets: Sequence[dg.AssetsDefinition], select: Sequence[str] | None
) -> list[dg.AssetsDefinition]:
    if not select:
        return list(assets)
    wanted = set(select)
    chosen = [
        a
        for a in assets
        if _asset_key(a).path[-1] in wanted or _asset_key(a).to_user_string() in wanted
    ]
    known = {_asset_key(a).path[-1] for a in assets} | {
        _asset_key(a).to_user_string() for a in assets
    }
    unknown = wanted - known
    if unknown:
        raise ValueError(
            f"--select names unknown asset(s) {sorted(unknown)}; known: {sorted(known)}"
        )
    return chosen


def _range_tags(asset: dg.AssetsDefinition) -> tuple[dict[str, str], int]:
    partitions = asset.partitions_def
    if partitions is None:
        return {}, 0
    keys = partitions.get_partition_keys()
    if not keys:
        return {}, 0
    return {RANGE_START: keys[0], RANGE_END: keys[-1]}, len(keys)


def _first_error(result: dg.JobExecutionResult) -> str:
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data and event.step_failure_data.error:
            error = event.step_failure_data.error
            while error.cause is not None:  # the user's exception, not Dagster's wrapper
                error = error.cause
            return error.message.strip().splitlines()[0]
    return "run failed"


def materialize_use_case(
    spec: UseCaseSpec,
    instance: dg.DagsterInstance,
    home: str | None = None,
    select: Sequence[str] | None = None,
    on_step: Callable[[StepResult], None] | None = None,
    before_run: Callable[[str], None] | None = None,
) -> list[StepResult]:
    """Materialize the (selected) assets of ``spec``; never raises for a failed asset.

    ``before_run`` is called with an asset's key before its run starts; what it raises stops
    the whole materialization (the CLI checks there that no run Dagster launched for the use
    case is in progress, :func:`dagster_project.home_writers.wait_for_dagster_runs`).
    """
    assets = use_case_assets(spec)
    defs = use_case_definitions([(spec, assets)], home)
    jobs: dict[str, dg.JobDefinition] = {}
    results: list[StepResult] = []
    failed: set[dg.AssetKey] = set()
    for asset in _selected(assets, select):
        key = _asset_key(asset).to_user_string()
        job_name = stage_job_name(spec.name, asset_stage(asset))
        if failed & set(asset.dependency_keys):
            step = StepResult(
                key,
                "skipped",
                error="an upstream asset failed or failed a blocking check",
                job=job_name,
            )
            failed.add(_asset_key(asset))  # and what depends on it is skipped in turn
        else:
            if job_name not in jobs:
                jobs[job_name] = defs.resolve_job_def(job_name)
            tags, n_partitions = _range_tags(asset)
            if before_run is not None:
                before_run(key)
            started = time.perf_counter()
            result = execute_asset_in_location(
                jobs[job_name],
                _asset_key(asset),
                instance,
                run_config=QUIET,
                tags={**tags, REASON_TAG: "playbook materialize"},
            )
            step = StepResult(
                key,
                "ok",
                time.perf_counter() - started,
                n_partitions,
                job=job_name,
                run_id=result.run_id,
            )
            for event in result.get_asset_materialization_events():
                rows = event.materialization.metadata.get("dagster/row_count")
                step.rows = int(rows.value) if rows is not None else step.rows
            for evaluation in result.get_asset_check_evaluations():
                step.checks[evaluation.check_name] = evaluation.passed
                if evaluation.description:
                    step.check_notes[evaluation.check_name] = evaluation.description
            if not result.success:
                step.status, step.error = "failed", _first_error(result)
            elif not all(step.checks.values()):
                step.status = "check failed"
            blocking = {c.name for c in asset.check_specs if c.blocking}
            step.check_severity = {
                name: "blocking" if name in blocking else "warning" for name in step.checks
            }
            step.blocking = any(
                not passed for name, passed in step.checks.items() if name in blocking
            )
            if step.status == "failed" or step.blocking:
                # a failed non-blocking check is reported but does not stop what depends on it
                failed.add(_asset_key(asset))
        results.append(step)
        if on_step:
            on_step(step)
    return results


def reexecution_tags(parent: dg.DagsterRun) -> dict[str, str]:
    """What a re-execution keeps of its parent's tags: the partition range and ours.

    Dagster's own tags (parent and root run ids, the step selection...) are set again by the
    re-execution itself; copying them would make the child claim to be its parent. So would
    the tag naming the process that ran the parent.
    """
    return {
        key: value
        for key, value in parent.tags.items()
        if key != WORKER_TAG and (key in KEPT_ON_REEXECUTION or not key.startswith("dagster/"))
    }


def reexecute(
    run_id: str, instance: dg.DagsterInstance, run_config: dict | None = None
) -> dg.JobExecutionResult:
    """Re-execute a run of a stage job from Python, as the UI's "Re-execute" does.

    The job is reconstructed from the ``playbook`` code location's module
    (:func:`dagster_project.definitions.location_job`), so this proves the run's job exists
    there under its name. Dagster's supported API for it is ``execute_job`` with
    ``ReexecutionOptions``: the new run is linked to its parent (``dagster/parent_run_id``)
    and covers the parent's asset selection. ``instance`` must be persistent (a home's
    ``dagster_home``), since ``execute_job`` may run steps in other processes. Only runs of
    use cases the location loads (``configs/`` or ``$PLAYBOOK_CONFIGS``) can be re-executed:
    a trial YAML materialized from elsewhere has no job there.
    """
    parent = instance.get_run_by_id(run_id)
    if parent is None:
        raise ValueError(f"no run {run_id} in this Dagster instance")
    job = dg.build_reconstructable_job(
        "dagster_project.definitions", "location_job", reconstructable_args=(parent.job_name,)
    )
    return dg.execute_job(
        job,
        instance=instance,
        run_config=parent.run_config if run_config is None else run_config,
        tags=reexecution_tags(parent),
        reexecution_options=dg.ReexecutionOptions(parent_run_id=run_id),
    )
