"""Retraining jobs and schedules, one per use case, from the YAML's ``monitoring`` section.

The retraining job re-materializes everything of the use case downstream of the raw logs --
split, features, Feast, training sets, models behind the registry gate, indices, the serving
bundle and the Bento -- so a scheduled (or sensor-requested) run ends in a gated promotion and a
new deployable artifact. Raw partitions are left to their own ingestion. Schedules start
stopped: turning one on is a deployment decision, made in the UI or with ``dagster schedule``.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

# batch serving's scoring windows: partitioned by ``serving.schedule`` and run by their own
# schedule, never by a retrain (a retrain job with them would ask for a window)
from assets.serving.batch_predictions_assets import PREDICTIONS_STAGE
from configs.schema.batch import is_batch
from configs.schema.usecase import UseCaseSpec
from runtime import layout

RAW_STAGE = "raw"
# what ``dg.define_asset_job`` returns; its class is not part of Dagster's public API
AssetJob = Any


def retrain_job_name(spec: UseCaseSpec) -> str:
    return f"{spec.name}_retrain"


def retrain_job(spec: UseCaseSpec) -> AssetJob:
    """Every asset of the use case except the raw logs, in one run."""
    return dg.define_asset_job(
        retrain_job_name(spec),
        selection=dg.AssetSelection.groups(spec.name)
        - dg.AssetSelection.tag("stage", RAW_STAGE)
        - dg.AssetSelection.tag("stage", PREDICTIONS_STAGE),
        description=f"Retrain {spec.name}: features to the registry gate and the serving bundle.",
        tags={layout.USE_CASE_RUN_TAG: spec.name},
    )


def retrain_schedule(spec: UseCaseSpec, job: AssetJob) -> dg.ScheduleDefinition | None:
    """The ``monitoring.retrain_cron`` schedule of ``job`` (UTC), or None without a cron."""
    cron = spec.monitoring.retrain_cron
    if cron is None:
        return None
    return dg.ScheduleDefinition(
        name=f"{spec.name}_retrain_schedule",
        cron_schedule=cron,
        job=job,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.STOPPED,
        tags={layout.USE_CASE_RUN_TAG: spec.name, "playbook/reason": "scheduled retrain"},
        description=f"Scheduled retraining of {spec.name} ({cron}, UTC).",
    )


def batch_scoring_schedule(spec: UseCaseSpec, jobs: list[AssetJob]) -> dg.ScheduleDefinition | None:
    """Batch serving's ``serving.schedule``: each tick scores the window that just closed.

    Built from the batch-scoring stage's job (``<use case>__batch_scoring``), whose partitions are
    that cron's windows, so tick and partition agree by construction; None in online mode.
    """
    if not is_batch(spec):
        return None
    name = layout.stage_job_name(spec.name, PREDICTIONS_STAGE)
    (job,) = [j for j in jobs if j.name == name]
    return dg.build_schedule_from_partitioned_job(
        job,
        name=f"{spec.name}_batch_scoring_schedule",
        description=f"Batch scoring of {spec.name} into the online store ({spec.serving.schedule}, UTC).",
        default_status=dg.DefaultScheduleStatus.STOPPED,
        tags={layout.USE_CASE_RUN_TAG: spec.name, "playbook/reason": "scheduled batch scoring"},
    )
