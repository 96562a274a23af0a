"""The closed loop on small data: materialize, serve and log, turn drift on, the drift sensor
fires once, the retraining run it requests trains a new version that passes or fails the gate.

One Dagster instance carries the whole story, so the sensor sees the raw partitions the runs
materialized; the drift is the fraud generator's switch (amounts scaled from a given day).
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from configs import CONFIG_DIR
from dagster_project.loader import build_definitions, load_use_cases
from resources.home import HomeResource
from resources.mlflow_resource import MLflowResource
from runtime.request_log import read_request_log
from serving.service import build_handler
from tests.integration.test_raw_assets import _run, _small

pytestmark = pytest.mark.integration

DAYS, NEW_DAYS = 21, 4
SKIP = ("funnel_evaluation", "bento", "triton_repository", "drift_report", "performance")


def _tick(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    home: Path,
    cursor: str | None,
    name: str = "fraud_drift_sensor",
):
    sensor = defs.resolve_sensor_def(name)
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"home": HomeResource(path=str(home))}
    )
    result = sensor.evaluate_tick(context)
    return result, context.cursor


def test_drift_triggers_one_retrain_that_goes_through_the_gate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (shipped,) = load_use_cases([CONFIG_DIR / "fraud.yaml"])
    before = _small(shipped, days=DAYS)
    # and a retrain after every 1,000 new raw rows, whatever they look like
    monitoring = before.monitoring.model_copy(update={"retrain_after_rows": 1000})
    before = before.model_copy(update={"monitoring": monitoring}).with_path(before.path)
    instance = dg.DagsterInstance.ephemeral()
    assert _run(before, tmp_path, instance=instance, stages_to_skip=SKIP).success

    # serve and log a day of transactions with the champion
    monkeypatch.setenv("PLAYBOOK_REQUEST_LOG", str(tmp_path / "requests.sqlite"))
    handler = build_handler(tmp_path / "serving" / "fraud" / "bundle")
    events = (tmp_path / "tables" / "fraud" / "raw_events").glob("*.parquet")
    last = pd.read_parquet(sorted(events)[-1]).head(200)
    for row in last.itertuples():
        handler.handle(
            {"transaction": {"card_id": int(row.card_id), "merchant_id": int(row.merchant_id)}}
        )
    handler.log.flush()
    assert len(read_request_log(tmp_path / "requests.sqlite")) == 200

    defs = build_definitions([before], home=tmp_path)
    result, cursor = _tick(defs, instance, tmp_path, None)
    assert "reference" in result.skip_message
    result, cursor = _tick(defs, instance, tmp_path, cursor)
    assert result.skip_message == "no new raw partitions"
    volume, volume_cursor = _tick(defs, instance, tmp_path, None, "fraud_new_data_sensor")
    assert "starting point" in volume.skip_message

    # turn drift on: the same world, amounts x4 from the first new day on
    params = before.source.params
    params = type(params).model_validate(
        {**params.model_dump(), "drift": {"from_day": DAYS, "amount_scale": 4.0}}
    )
    source = before.source.model_copy(update={"days": DAYS + NEW_DAYS, "params": params})
    after = before.model_copy(update={"source": source}).with_path(before.path)
    assert _run(after, tmp_path, select="raw_events", instance=instance).success

    defs = build_definitions([after], home=tmp_path)
    result, cursor = _tick(defs, instance, tmp_path, cursor)
    (request,) = result.run_requests
    assert request.tags["playbook/reason"] == "drift"
    assert "amount" in request.tags["playbook/drifted_features"]
    again, _ = _tick(defs, instance, tmp_path, cursor)
    assert not again.run_requests  # the same drift never triggers twice
    volume, volume_cursor = _tick(defs, instance, tmp_path, volume_cursor, "fraud_new_data_sensor")
    (more,) = volume.run_requests
    assert more.tags["playbook/reason"] == "new data" and int(more.tags["playbook/new_rows"]) > 1000
    volume, _ = _tick(defs, instance, tmp_path, volume_cursor, "fraud_new_data_sensor")
    assert not volume.run_requests  # counted rows start again from zero

    job = defs.resolve_job_def("fraud_retrain")
    run = job.execute_in_process(instance=instance, tags=request.tags, raise_on_error=False)
    assert run.success
    gate = [c for c in run.get_asset_check_evaluations() if c.check_name == "promotion_gate"]
    assert len(gate) == 1  # passed or not, the new version went through the gate
    registry = MLflowResource(home=str(tmp_path))
    assert registry.latest_version("fraud.scorer") == "2"
    champion = registry.version_by_alias("fraud.scorer", "champion")
    assert champion == ("2" if gate[0].passed else "1")
    assert instance.get_run_by_id(run.run_id).tags["playbook/reason"] == "drift"
