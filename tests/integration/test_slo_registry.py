"""The promotion split for an SLO, on a real SQLite MLflow store: the gate holds a passing version
as an awaiting challenger, and only :meth:`MLflowResource.promote` (what the SLO check calls on a
pass) moves ``champion``; the check's verdict lands on the version and on its training run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from resources import mlflow_slo
from resources.mlflow_resource import MLflowResource
from runtime.layout import CHALLENGER, CHAMPION
from runtime.promotion import AWAITING_SLO_TAG, PREVIOUS_CHAMPION_TAG, SLO_TAG_PREFIX, SLOVerdict
from tests.integration.test_mlflow_registry import Store, log, mae

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    base = tmp_path_factory.mktemp("mlflow-slo")
    plot = base / "latency_histogram.png"
    plot.write_bytes(b"\x89PNG not really")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(base)
        yield Store(MLflowResource(home=str(base / "home")), base / "home", base, plot)


def _gate(resource: MLflowResource, name: str, version: str):
    return resource.run_gate(
        name, version, mae, higher_is_better=False, margin=0.1, hold_for_slo=True
    )


def test_a_held_version_waits_as_challenger_until_promoted(registry: Store) -> None:
    resource, name = registry.resource, "held"

    first = log(registry, name, 2.0)  # exact: mae 0
    verdict = _gate(resource, name, first.version)
    assert verdict.promote and "until the SLO check" in verdict.reason
    # no champion yet, and still none: a first version meets the SLO before it is served
    assert resource.version_by_alias(name, CHAMPION) is None
    assert resource.awaiting_slo(name) == first.version
    assert resource.promote(name, first.version) is None
    assert resource.version_by_alias(name, CHAMPION) == first.version
    assert AWAITING_SLO_TAG not in resource.version_tags(name, first.version)
    assert resource.awaiting_slo(name) is None  # challenger is champion now

    second = log(registry, name, 1.98)  # mae 0.05: within the margin, passes the gate
    assert _gate(resource, name, second.version).promote
    assert resource.version_by_alias(name, CHAMPION) == first.version
    assert resource.version_by_alias(name, CHALLENGER) == second.version
    assert resource.version_tags(name, second.version)[AWAITING_SLO_TAG] == "true"
    assert resource.promote(name, second.version) == first.version
    tags = resource.version_tags(name, second.version)
    assert tags[PREVIOUS_CHAMPION_TAG] == first.version and AWAITING_SLO_TAG not in tags

    worse = log(registry, name, 0.5)  # fails the gate: never awaits the SLO
    assert not _gate(resource, name, worse.version).promote
    assert AWAITING_SLO_TAG not in resource.version_tags(name, worse.version)
    assert resource.awaiting_slo(name) is None
    assert resource.version_by_alias(name, CHAMPION) == second.version

    # without an SLO the gate promotes at once, as before
    third = log(registry, name, 2.0)
    assert resource.run_gate(name, third.version, mae, higher_is_better=False, margin=0.1).promote
    assert resource.version_by_alias(name, CHAMPION) == third.version
    assert resource.version_tags(name, third.version)[PREVIOUS_CHAMPION_TAG] == second.version


def test_an_slo_verdict_is_kept_on_the_version_and_its_run(registry: Store) -> None:
    resource, name = registry.resource, "measured"
    version = log(registry, name, 2.0)
    verdict = SLOVerdict(False, ("p99 19.2 ms > 8 ms",))
    figures = {"p99_ms": 19.2, "qps": 397.5}
    client = resource.client()
    run_id = mlflow_slo.record(client, name, version.version, verdict, figures, [registry.plot])
    assert run_id == version.run_id
    tags = resource.version_tags(name, version.version)
    assert tags[SLO_TAG_PREFIX + "holds"] == "false"
    assert tags[SLO_TAG_PREFIX + "reason"] == "p99 19.2 ms > 8 ms"
    assert tags[SLO_TAG_PREFIX + "p99_ms"] == "19.2"
    run = client.get_run(run_id)
    assert run.data.metrics["slo.p99_ms"] == pytest.approx(19.2)
    assert run.data.metrics["slo.qps"] == pytest.approx(397.5)
    assert run.data.tags[SLO_TAG_PREFIX + "reason"] == "p99 19.2 ms > 8 ms"
    assert [a.path for a in client.list_artifacts(run_id, "slo")] == ["slo/latency_histogram.png"]
