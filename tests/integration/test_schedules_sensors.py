"""Every use case's three retraining triggers, as the ``playbook`` code location loads them.

The README promises a cron schedule, a drift sensor and a new-data sensor per use case; the
new-data sensor exists for every config because ``monitoring.retrain_after_rows`` has a
default. All three start stopped and request the use case's ``<name>_retrain`` job.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from configs.schema.stages import MonitoringSpec
from dagster_project.definitions import defs
from dagster_project.loader import build_definitions, load_use_cases

pytestmark = pytest.mark.integration


def test_each_shipped_use_case_has_its_schedule_and_both_sensors() -> None:
    location = defs()  # what ``dagster dev`` loads: every config in configs/
    specs = load_use_cases()
    assert {spec.name for spec in specs} == {"feed", "fraud", "moderation", "pricing", "search"}
    for spec in specs:
        job = f"{spec.name}_retrain"
        schedule = location.resolve_schedule_def(f"{spec.name}_retrain_schedule")
        assert schedule.job_name == job
        assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
        for name in (f"{spec.name}_drift_sensor", f"{spec.name}_new_data_sensor"):
            sensor = location.resolve_sensor_def(name)
            assert sensor.job_name == job
            assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
        # the shipped threshold is set in the YAML, about a week of each generator's rows
        assert spec.monitoring.retrain_after_rows != MonitoringSpec().retrain_after_rows
        sensor = location.resolve_sensor_def(f"{spec.name}_new_data_sensor")
        assert f"{spec.monitoring.retrain_after_rows:,}" in (sensor.description or "")


def test_a_config_without_the_threshold_still_gets_the_new_data_sensor(
    ratings_config: Path, tmp_path: Path
) -> None:
    (spec,) = load_use_cases([ratings_config])  # its YAML has no monitoring section
    assert spec.monitoring.retrain_after_rows == 100_000
    definitions = build_definitions([spec], home=tmp_path)
    sensor = definitions.resolve_sensor_def("movies_new_data_sensor")
    assert sensor.job_name == "movies_retrain"
    assert "100,000" in (sensor.description or "")
    # a spec saved before the default (a serving bundle's, ``null``) still loads, with it
    assert MonitoringSpec.model_validate({"retrain_after_rows": None}).retrain_after_rows == 100_000
