"""``feed/experiment_analysis`` for real: requests served in-process, then the asset materialized.

The shared small feed world is served through its bundle by the real handler (arms by the real
hash, the real request log), replayed as of the middle of the data so every user has events
before (the CUPED covariate) and after (the outcome) exposure. The home is a fresh folder with a
copy of the raw events, so the shared home is never written.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from assets.experiments.experiment_analysis_assets import GUARDRAIL_CHECK, SRM_CHECK
from configs import CONFIG_DIR
from dagster_project.use_case_files import load_use_cases
from runtime import layout
from runtime.request_log import read_request_log
from serving.service import REQUEST_LOG_ENV, build_handler
from tests.integration.served import DAYS, materialized_home
from tests.integration.test_performance_rollback import _materialize as _materialize_keys
from tests.integration.test_raw_assets import _run, _small

pytestmark = pytest.mark.integration

KEY = dg.AssetKey(["feed", "experiment_analysis"])


def _spec():
    (spec,) = load_use_cases([CONFIG_DIR / "feed.yaml"])
    return _small(spec, days=DAYS["feed"])


def _home(shared: Path, tmp_path: Path) -> Path:
    home = tmp_path / "home"
    events = Path("tables") / "feed" / "raw_events"
    shutil.copytree(shared / events, home / events)
    return home


def _materialize(home: Path) -> dg.ExecuteInProcessResult:
    result = _run(_spec(), home, select="experiment_analysis")
    assert result.success
    return result


def test_experiment_analysis_of_served_requests(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = materialized_home(tmp_path_factory, "feed")
    home = _home(shared, tmp_path)
    log_path = home / "serving" / "feed" / "request_log.sqlite"
    monkeypatch.setenv(REQUEST_LOG_ENV, str(log_path))

    events = pd.concat(
        pd.read_parquet(f) for f in sorted((home / "tables/feed/raw_events").glob("*.parquet"))
    )
    # every user of the small world once (the hash splits these 469 users 261 / 208, which a
    # sample of them can make look like a mismatch), then 30 of them again a few hours later
    users = np.unique(events["user_id"])
    rng = np.random.default_rng(0)
    first = pd.Timestamp("2025-01-07") + pd.to_timedelta(rng.uniform(0, 24, len(users)), unit="h")
    again = rng.choice(len(users), 30, replace=False)
    visits = [
        *zip(users, first, strict=True),
        *zip(users[again], first[again] + pd.Timedelta("3h"), strict=True),
    ]
    handler = build_handler(shared / "serving" / "feed" / "bundle")
    for user, as_of in visits:
        answer = handler.handle({"user_id": int(user), "k": 10, "as_of": as_of.isoformat()})
        assert answer["arm"] in {"control", "treatment"}
    handler.log.flush()
    assert len(read_request_log(log_path)) == len(visits)

    result = _materialize(home)
    frame = result.asset_value(KEY)
    (row,) = frame.to_dict("records")
    assert (row["arm"], row["control"]) == ("treatment", "control")
    assert row["n"] > 50 and row["n_control"] > 50
    assert row["n"] + row["n_control"] <= len(users)
    assert row["planned_n"] > row["n"]  # a few hundred users are far from the plan
    assert row["verdict"] == "insufficient_sample"
    assert row["cuped"] and row["test"] == "welch_cuped"
    assert row["ci_low"] <= row["diff"] <= row["ci_high"]

    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["verdict"].value == "insufficient_sample"
    assert metadata["srm_p_value"].value > 0.001 and not metadata["srm_flagged"].value
    assert metadata["excluded/mixed_arm_units"].value == 0
    exposed = metadata["exposed/control"].value + metadata["exposed/treatment"].value
    assert exposed == len(users)
    assert "lift CI" in metadata["comparison"].value
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert {SRM_CHECK, GUARDRAIL_CHECK} <= set(checks) and checks[SRM_CHECK].passed

    # the guardrails of feed.yaml: both arms serve the same model, so none is harmful; the
    # latencies are the handler's own, purchases the events'
    assert checks[GUARDRAIL_CHECK].passed
    assert metadata["decision"].value == "keep_running" and not metadata["stop"].value
    for name in ("latency_p99", "purchase"):
        assert metadata[f"guardrail/{name}/status"].value in {"pending", "inconclusive"}
        assert f"guardrail/{name}/harm_bound" in metadata
    assert metadata["guardrail/latency_p99/value_control"].value > 0
    assert "at most (at plan)" in metadata["guardrails"].value
    assert "keep running" in metadata["summary"].value.lower()
    guard_metadata = checks[GUARDRAIL_CHECK].metadata
    assert "latency_p99" in guard_metadata["evidence"].value

    # the same log, judged by clicks within each request's session (delayed-label tracking)
    key = dg.AssetKey(layout.performance_key(_spec().name, "ranking"))
    performance = _materialize_keys(_spec(), home, [key])
    table = performance.asset_value(key)
    served = sum(len(r["items"]) for r in read_request_log(log_path)["response"])
    assert table["predictions"].sum() == table["labelled"].sum() == served
    assert set(table["version"]) == {"1"} and (table["pending"] == 0).all()


def test_experiment_analysis_without_a_log_is_no_data(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    home = _home(materialized_home(tmp_path_factory, "feed"), tmp_path)
    result = _materialize(home)
    assert result.asset_value(KEY).empty
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["verdict"].value == "no_data" and "no request log" in metadata["reason"].value
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    for name in (SRM_CHECK, GUARDRAIL_CHECK):
        assert checks[name].passed and checks[name].metadata["status"].value == "no_data"
