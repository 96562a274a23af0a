"""Materialize a use case in-process, asset by asset, and summarise what happened.

One run per asset (in dependency order) gives a live progress display and lets a failed or
blocked asset stop only what depends on it. A partitioned asset is run over all its partitions
at once through Dagster's partition-range tags, which the single-run backfill policy allows.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import dagster as dg

from configs.schema import UseCaseSpec
from dagster_project.loader import resources, use_case_assets
from resources.home import playbook_home

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
# Step-by-step DEBUG events belong in the Dagster UI, not on the terminal behind a progress bar.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


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
    blocking: bool = False  # failed, skipped, or a blocking check failed: stops what follows

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


def _first_error(result: dg.ExecuteInProcessResult) -> str:
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
) -> list[StepResult]:
    """Materialize the (selected) assets of ``spec``; never raises for a failed asset."""
    assets = use_case_assets(spec)
    storage = resources(playbook_home(home))
    results: list[StepResult] = []
    failed: set[dg.AssetKey] = set()
    for asset in _selected(assets, select):
        key = _asset_key(asset).to_user_string()
        if failed & set(asset.dependency_keys):
            step = StepResult(
                key, "skipped", error="an upstream asset failed or failed a blocking check"
            )
        else:
            tags, n_partitions = _range_tags(asset)
            started = time.perf_counter()
            result = dg.materialize(
                assets,
                selection=[_asset_key(asset)],
                run_config=QUIET,
                instance=instance,
                resources=storage,
                tags=tags,
                raise_on_error=False,
            )
            step = StepResult(key, "ok", time.perf_counter() - started, n_partitions)
            for event in result.get_asset_materialization_events():
                rows = event.materialization.metadata.get("dagster/row_count")
                step.rows = int(rows.value) if rows is not None else step.rows
            for evaluation in result.get_asset_check_evaluations():
                step.checks[evaluation.check_name] = evaluation.passed
            if not result.success:
                step.status, step.error = "failed", _first_error(result)
            elif not all(step.checks.values()):
                step.status = "check failed"
            blocking = {c.name for c in asset.check_specs if c.blocking}
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
