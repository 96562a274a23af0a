"""``<use case>/drift_report`` on the shared small fraud world: no alert on undrifted data."""

from __future__ import annotations

import pytest

from configs import CONFIG_DIR
from dagster_project.use_case_files import load_use_cases
from tests.integration.served import DAYS, materialized_home
from tests.integration.test_raw_assets import _run, _small

pytestmark = pytest.mark.integration


def test_drift_report_of_an_undrifted_world(tmp_path_factory: pytest.TempPathFactory) -> None:
    home = materialized_home(tmp_path_factory, "fraud")
    (spec,) = load_use_cases([CONFIG_DIR / "fraud.yaml"])
    result = _run(_small(spec, days=DAYS["fraud"]), home, select="drift_report")
    assert result.success
    (event,) = result.get_asset_materialization_events()
    table = result.asset_value(event.asset_key)
    assert set(table["source"]) == {"events", "model:scorer"}
    model = table[table["source"] == "model:scorer"]
    assert "score" in set(model["feature"]) and len(model) > 10
    assert table["psi"].notna().all() and (table["status"] != "alert").all(), table
    metadata = event.materialization.metadata
    assert abs(metadata["shift/rows_per_day"].value) < 0.2
    # the window is the last day: no chargeback of it has arrived, so no fraud rate to compare
    assert "rows_per_day" in metadata["shifts"].value
    assert "label_rate:fraud" not in metadata["shifts"].value
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == "no_drift_alert" and check.passed
