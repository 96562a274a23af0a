"""Retraining schedules and jobs built from the shipped YAML's ``monitoring`` section."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from dagster_project.loader import build_definitions, load_use_cases
from runtime import layout


def test_each_use_case_has_a_retrain_job_and_its_cron_schedule(tmp_path: Path) -> None:
    specs = load_use_cases()
    defs = build_definitions(specs, home=tmp_path)
    for spec in specs:
        schedule = defs.resolve_schedule_def(f"{spec.name}_retrain_schedule")
        assert schedule.cron_schedule == spec.monitoring.retrain_cron
        assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
        job = defs.resolve_job_def(f"{spec.name}_retrain")
        keys = {"/".join(k.path) for k in job.asset_layer.executable_asset_keys}
        # the chain from features to the gate and the serving artifacts, never the raw logs;
        # batch serving has no per-request artifacts, its predictions run on their own schedule
        if spec.serving is not None and spec.serving.mode == "batch":
            assert not {f"{spec.name}/bento", f"{spec.name}/predictions"} & keys
        else:
            assert {f"{spec.name}/bento", f"{spec.name}/serving_bundle"} <= keys
        assert all("/".join(layout.model_key(spec.name, m)) in keys for m in spec.model)
        assert not any("/raw_" in key for key in keys)
        assert all(key.startswith(f"{spec.name}/") for key in keys)
        context = dg.build_schedule_context(
            scheduled_execution_time=datetime(2026, 1, 5, tzinfo=UTC)
        )
        (request,) = schedule.evaluate_tick(context).run_requests
        assert request.tags["playbook/reason"] == "scheduled retrain"
