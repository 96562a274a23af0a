"""The SLO check for real: a small fraud world, its Bento served by ``bentoml serve`` and driven
by ``wrk``, against a real MLflow registry.

One world, three runs: the scorer is trained without an SLO (version 1 is champion), retrained
with an SLO no service can meet (``p99_ms: 0.01``: version 2 stays challenger, the blocking check
fails, ``playbook materialize`` skips the bundle), then the check runs again with an SLO that
holds (2 s): version 2, still awaiting, becomes champion. Small load (1 worker, 2 clients,
1 s + 2 s) to keep the test short on 2 cores; the shipped SLOs are what ``make run`` checks.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest

from assets.serving.load_test import WRK_INSTALL
from configs import CONFIG_DIR
from configs.schema.slo import SLOSpec
from configs.schema.usecase import UseCaseSpec
from dagster_project.materialize import materialize_use_case
from dagster_project.run_summary import problems
from dagster_project.use_case_files import load_use_cases
from resources.mlflow_resource import MLflowResource
from runtime.layout import CHALLENGER, CHAMPION, registered_model_name
from runtime.promotion import AWAITING_SLO_TAG, PREVIOUS_CHAMPION_TAG, SLO_TAG_PREFIX
from tests.integration.served import DAYS
from tests.integration.test_raw_assets import _run, _small

pytestmark = pytest.mark.integration

SCORER = registered_model_name("fraud", "scorer")
AFTER_MODELS = (
    "funnel_evaluation",
    "triton_repository",
    "drift_report",
    "performance",
    "experiment_analysis",
    "serving_bundle",
    "bento",
    "slo_check",
)


def _with_slo(spec: UseCaseSpec, p99_ms: float) -> UseCaseSpec:
    slo = SLOSpec(p99_ms=p99_ms, workers=1, clients=2, warmup_s=1, duration_s=2, bodies=64)
    return spec.model_copy(update={"slo": slo})


@pytest.fixture
def fraud(tmp_path: Path) -> tuple[UseCaseSpec, Path]:
    if shutil.which("wrk") is None:
        pytest.skip(f"wrk is not installed: run {WRK_INSTALL}")
    (spec,) = load_use_cases([CONFIG_DIR / "fraud.yaml"])
    spec = _small(spec, days=DAYS["fraud"]).model_copy(update={"slo": None})
    home = tmp_path / "home"
    assert _run(spec, home, stages_to_skip=AFTER_MODELS).success
    return spec, home


def _check(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    (check,) = [c for c in result.get_asset_check_evaluations() if c.check_name == "slo"]
    return check


def test_champion_moves_only_when_the_served_challenger_meets_the_slo(
    fraud: tuple[UseCaseSpec, Path],
) -> None:
    spec, home = fraud
    registry = MLflowResource(home=str(home))
    assert registry.version_by_alias(SCORER, CHAMPION) == "1"

    # an SLO that cannot hold: the gate passes version 2, the served Bento does not
    strict = _with_slo(spec, 0.01)
    with dg.instance_for_test() as instance:
        steps = materialize_use_case(
            strict,
            instance,
            home=str(home),
            select=["scorer_model", "slo_check", "serving_bundle"],
        )
    by_asset = {step.asset: step for step in steps}
    assert by_asset["fraud/models/scorer_model"].status == "ok"
    slo_step = by_asset["fraud/slo_check"]
    assert slo_step.checks == {"slo": False} and slo_step.check_severity == {"slo": "blocking"}
    assert by_asset["fraud/serving_bundle"].status == "skipped"
    assert any("fraud/slo_check: check slo failed (blocking)" in p.text for p in problems(steps))
    assert registry.version_by_alias(SCORER, CHAMPION) == "1"
    assert registry.version_by_alias(SCORER, CHALLENGER) == "2"
    tags = registry.version_tags(SCORER, "2")
    assert tags[AWAITING_SLO_TAG] == "true"  # still a candidate: a re-check may promote it
    assert tags[SLO_TAG_PREFIX + "holds"] == "false"
    reason = tags[SLO_TAG_PREFIX + "reason"]
    assert reason.startswith("p99 ") and reason.endswith(" > 0.01 ms")
    run = registry.client().get_run(registry.client().get_model_version(SCORER, "2").run_id)
    assert run.data.tags[SLO_TAG_PREFIX + "reason"] == reason
    assert run.data.metrics["slo.p99_ms"] > 0.01 and run.data.metrics["slo.requests"] > 0

    # the same candidate, an SLO that holds: version 2 becomes champion
    result = _run(_with_slo(spec, 2000.0), home, select="slo_check")
    assert result.success
    check = _check(result)
    assert check.passed, check.metadata
    assert check.metadata["reason"].value.startswith("p99 ")
    assert check.metadata["champion"].value == {"scorer": "2"}
    (event,) = result.get_asset_materialization_events()
    metadata = event.materialization.metadata
    assert metadata["champion_before"].value == {"scorer": "1"}
    assert metadata["champion_after"].value == {"scorer": "2"}
    assert metadata["figures/requests"].value > 0 and metadata["figures/errors"].value == 0
    assert 0 < metadata["figures/p50_ms"].value <= metadata["figures/p99_ms"].value < 2000
    assert metadata["figures/qps"].value > 0
    assert metadata["figures/server_cpu_ms_per_request"].value > 0
    assert metadata["workers_started"].value == 1
    assert "data:image/png;base64," in metadata["latency_histogram"].value
    assert registry.version_by_alias(SCORER, CHAMPION) == "2"
    tags = registry.version_tags(SCORER, "2")
    assert tags[PREVIOUS_CHAMPION_TAG] == "1" and AWAITING_SLO_TAG not in tags
    assert tags[SLO_TAG_PREFIX + "holds"] == "true"
    # the candidate's Bento and requests stayed out of the served ones
    folder = home / "serving" / "fraud" / "slo_check"
    assert not (folder / "candidate").exists() and (folder / "latency_histogram.png").is_file()
    assert not (home / "serving" / "fraud" / "request_log.sqlite").exists()
    assert not (home / "bentoml").exists()
