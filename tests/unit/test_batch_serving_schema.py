"""Batch serving's YAML: the mode, its cron and entity, the checks across sections, the schedule.

A bad cron names ``serving.schedule`` and its line; batch without a schedule, online without an
endpoint, an endpoint in batch mode are each refused with the reason; a model that needs an event
(a view keyed by another entity, request-time features) cannot be batch-scored. Built into
Definitions, the use case has the batch schedule on the cron, the scoring windows as partitions,
no Bento or bundle, and a retrain job without the partitioned predictions.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from configs import CONFIG_DIR
from configs.schema import SpecError
from configs.schema.batch import batch_entity, batch_model, batch_problems
from configs.schema.stages import ServingSpec
from dagster_project.use_case_files import load_use_cases
from tests.batch_serving_world import CARD_RISK_YAML, write_card_risk


def _load(tmp_path: Path, old: str = "", new: str = ""):
    (spec,) = load_use_cases([write_card_risk(tmp_path, CARD_RISK_YAML.replace(old, new))])
    return spec


def test_shipped_configs_serve_online_but_pricing_in_batch() -> None:
    specs = load_use_cases(sorted(CONFIG_DIR.glob("*.yaml")))
    modes = {s.name: s.serving.mode if s.serving else None for s in specs}
    assert modes == {
        "feed": "online",
        "fraud": "online",
        "moderation": "online",
        "pricing": "batch",
        "search": "online",
    }
    assert all(list(batch_problems(s)) == [] for s in specs)


def test_bad_cron_names_the_schedule_field_and_line(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as caught:
        _load(tmp_path, 'schedule: "0 * * * *"', 'schedule: "61 * * * *"')
    message = str(caught.value)
    assert "serving.schedule" in message and "61 * * * *" in message, message
    assert "5-field cron" in message
    line = CARD_RISK_YAML.splitlines().index(
        next(x for x in CARD_RISK_YAML.splitlines() if x.startswith("serving:"))
    )
    assert f"card_risk.yaml:{line + 1}" in message, message


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"mode": "batch"}, "batch serving needs a schedule"),
        ({"mode": "batch", "schedule": "0 * * * *", "endpoint": "score"}, "remove endpoint"),
        ({}, "online serving needs an endpoint"),
        ({"endpoint": "score", "schedule": "0 * * * *"}, "only read in batch mode"),
        ({"mode": "batch", "schedule": "every hour"}, "5-field cron"),
        ({"mode": "stream", "schedule": "0 * * * *"}, "'online' or 'batch'"),
    ],
)
def test_serving_section_refuses(fields: dict, expected: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ServingSpec(**fields)
    assert expected in str(caught.value)


def test_batch_defaults_resolve_model_and_entity(tmp_path: Path) -> None:
    spec = _load(tmp_path)
    assert spec.serving.mode == "batch" and spec.serving.endpoint is None
    assert (batch_model(spec), batch_entity(spec)) == ("scorer", "card")
    assert list(batch_problems(spec)) == []


def test_a_model_that_needs_an_event_cannot_be_batch_scored(tmp_path: Path) -> None:
    merchant_view = """\
  merchant_risk:
    entities: [merchant]
    aggregates:
      - {agg: count, windows: [1d]}
  transaction:
    request: {amount_log: log1p(amount)}
model:"""
    spec = _load(tmp_path, "model:", merchant_view).model_copy()
    stage = spec.model["scorer"].model_copy(
        update={"features": ["card_velocity", "merchant_risk", "transaction"]}
    )
    spec = spec.model_copy(update={"model": {"scorer": stage}})
    assert batch_entity(spec) is None
    problems = dict(batch_problems(spec))
    assert "name it in serving.entity" in problems[("serving", "mode")]

    named = spec.model_copy(update={"serving": spec.serving.model_copy(update={"entity": "card"})})
    problems = dict(batch_problems(named))
    assert (
        "keyed by ['merchant'], not [card]" in problems[("features", "merchant_risk", "entities")]
    )
    assert "need an event" in problems[("features", "transaction", "request")]
    from assets.serving.batch_predictions_assets import predictions_asset

    with pytest.raises(ValueError, match=r"features\.merchant_risk\.entities: batch scoring"):
        predictions_asset(named)


def test_definitions_hold_the_schedule_and_no_endpoint(tmp_path: Path) -> None:
    import dagster as dg

    from dagster_project.loader import use_case_assets, use_case_definitions

    spec = _load(tmp_path)
    assets = use_case_assets(spec)
    keys = {k.to_user_string() for a in assets for k in a.keys}
    assert "card_risk/predictions" in keys
    assert not {"card_risk/serving_bundle", "card_risk/bento"} & keys
    defs = use_case_definitions([(spec, assets)], tmp_path / "home")
    schedule = defs.get_schedule_def("card_risk_batch_scoring_schedule")
    assert schedule.cron_schedule == "0 * * * *"
    assert schedule.job_name == "card_risk__batch_scoring"
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    # the 05:00 tick scores the window that just closed, 04:00-05:00
    tick = dg.build_schedule_context(scheduled_execution_time=datetime(2025, 1, 3, 5, tzinfo=UTC))
    (request,) = schedule.evaluate_tick(tick).run_requests
    assert request.partition_key == "2025-01-03-0400"
    assert request.tags["playbook/reason"] == "scheduled batch scoring"
    (predictions,) = [a for a in assets if a.key.path[-1] == "predictions"]
    windows = predictions.partitions_def
    assert windows.get_partition_keys()[:2] == ["2025-01-01-0000", "2025-01-01-0100"]
    assert len(windows.get_partition_keys()) == 6 * 24  # hourly windows over the six days
    retrain = defs.resolve_job_def("card_risk_retrain")
    assert dg.AssetKey(["card_risk", "predictions"]) not in retrain.asset_layer.selected_asset_keys
    assert retrain.partitions_def is None
