"""The rollback check without Dagster: registry reads, the rule, the rollback and its metadata.

The summaries come from the real join of a hand-made request log with labelled events
(``join_labels`` and ``version_summary``); the registry is a small in-memory fake, the one edge
the check talks to (``MLflowResource`` in the pipeline).
"""

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pytest

from assets.monitoring.performance import (
    join_labels,
    logged_predictions,
    version_summary,
)
from assets.monitoring.rollback import (
    DEFAULT_METRIC,
    MIN_LABELLED,
    MIN_POSITIVES,
    check_rollback,
    rollback_metric,
)
from configs import CONFIG_DIR
from configs.schema import load_specs
from runtime import layout
from runtime.promotion import PREVIOUS_CHAMPION_TAG, RollbackEvent
from tests.unit.test_performance import DAY, TARGET

NAME = "fraud-scorer"
EXPERIMENT = "playbook/fraud"
KEPT_KEYS = [
    "rolled_back",
    "registered_model",
    "metric",
    "margin",
    "min_labelled",
    "min_positives",
    "champion_version",
    "previous_champion",
    "reason",
]


@dataclass
class FakeRegistry:
    """Aliases and version tags in memory; records every rollback it is asked for."""

    champion: str | None = None
    tags: dict[str, dict[str, str]] = field(default_factory=dict)
    rollbacks: list[tuple[str, str, str, str | None]] = field(default_factory=list)

    def version_by_alias(self, name: str, alias: str) -> str | None:
        assert (name, alias) == (NAME, layout.CHAMPION)
        return self.champion

    def version_tags(self, name: str, version: str) -> dict[str, str]:
        return self.tags.get(version, {})

    def rollback(
        self, name: str, to_version: str, reason: str, experiment: str | None = None
    ) -> RollbackEvent:
        self.rollbacks.append((name, to_version, reason, experiment))
        event = RollbackEvent(name, self.champion, to_version, reason, "2025-03-12T00:00:00Z", "r1")
        self.champion = to_version
        return event


def _summary(quality: dict[str, float], n: int = 300, frauds: int = 30) -> pd.DataFrame:
    """Version summaries of ``n`` scored transactions per version, ``frauds`` of them fraud.

    ``quality`` per version: 1.0 scores every fraud above every legitimate one, 0.0 at random.
    """
    rng = np.random.default_rng(0)
    rows, labels = [], {}
    for version, good in quality.items():
        for i in range(n):
            key = len(labels)
            y = int(i < frauds)
            separated = 0.6 + 0.3 * rng.random() if y else 0.1 + 0.3 * rng.random()
            score = good * separated + (1 - good) * rng.random()
            labels[key] = y
            rows.append(
                {
                    "id": key,
                    "logged_at": (DAY + pd.Timedelta(hours=1)).timestamp(),
                    "endpoint": "score",
                    "unit": "1",
                    "arm": "champion",
                    "request": {"transaction": {"transaction_id": key}},
                    "model_versions": {"scorer": version},
                    "features": {},
                    "scores": {"probability": score, "margin": 0.0},
                    "response": {"probability": score, "decision": None},
                    "feature_misses": 0,
                    "latency_ms": 1.0,
                }
            )
    events = pd.DataFrame(
        {
            "transaction_id": list(labels),
            "event_time": DAY,
            "is_fraud": list(labels.values()),
            "label_time": DAY + pd.Timedelta("1D"),
            "amount": 1.0,
        }
    )
    log = pd.DataFrame(rows)
    joined = join_labels(logged_predictions(log, TARGET), events, TARGET, DAY + pd.Timedelta("5D"))
    return version_summary(joined)


def test_a_worse_champion_is_rolled_back_to_the_version_it_replaced() -> None:
    registry = FakeRegistry(champion="2", tags={"2": {PREVIOUS_CHAMPION_TAG: "1"}})
    outcome = check_rollback(
        registry, NAME, _summary({"1": 1.0, "2": 0.0}), "auc", 0.05, experiment=EXPERIMENT
    )

    assert outcome.rolled_back and outcome.decision.roll_back
    assert registry.champion == "1"
    assert registry.rollbacks == [(NAME, "1", outcome.decision.reason, EXPERIMENT)]
    assert "worse by" in outcome.decision.reason
    metadata = outcome.metadata()
    assert list(metadata) == [
        "rolled_back",
        "rolled_back_from",
        "rolled_back_to",
        "rolled_back_at",
        "mlflow_run_id",
        "champion_value",
        "previous_value",
        "champion_now",
        *KEPT_KEYS[1:],
    ]
    assert metadata["rolled_back"] is True
    assert (metadata["rolled_back_from"], metadata["rolled_back_to"]) == ("2", "1")
    assert metadata["champion_now"] == "1" and metadata["mlflow_run_id"] == "r1"
    assert metadata["previous_value"] == pytest.approx(1.0)
    assert metadata["previous_value"] > metadata["champion_value"] + 0.05
    assert (metadata["champion_version"], metadata["previous_champion"]) == ("2", "1")
    assert (metadata["min_labelled"], metadata["min_positives"]) == (MIN_LABELLED, MIN_POSITIVES)
    assert metadata["margin"] == 0.05 and isinstance(metadata["margin"], float)


def test_a_champion_within_the_margin_stays() -> None:
    registry = FakeRegistry(champion="2", tags={"2": {PREVIOUS_CHAMPION_TAG: "1"}})
    outcome = check_rollback(registry, NAME, _summary({"1": 1.0, "2": 1.0}), "auc", 0.05)

    assert not outcome.rolled_back and registry.rollbacks == [] and registry.champion == "2"
    metadata = outcome.metadata()
    assert list(metadata) == KEPT_KEYS
    assert metadata["rolled_back"] is False and "within margin" in metadata["reason"]


def test_no_champion_or_no_recorded_predecessor_never_rolls_back() -> None:
    summary = _summary({"1": 1.0, "2": 0.0})

    nothing = check_rollback(FakeRegistry(), NAME, summary, "auc", 0.05)
    assert nothing.metadata()["reason"] == "no champion"
    assert nothing.metadata()["champion_version"] == "none"

    first = FakeRegistry(champion="2")  # promoted with no champion before it
    alone = check_rollback(first, NAME, summary, "auc", 0.05)
    assert "no previous champion recorded" in alone.decision.reason
    assert alone.metadata()["previous_champion"] == "none"
    assert first.rollbacks == []


def test_too_few_labels_wait_however_bad_the_champion_looks() -> None:
    registry = FakeRegistry(champion="2", tags={"2": {PREVIOUS_CHAMPION_TAG: "1"}})
    summary = _summary({"1": 1.0, "2": 0.0}, n=100, frauds=10)  # 100 < MIN_LABELLED
    outcome = check_rollback(registry, NAME, summary, "auc", 0.05)
    assert not outcome.rolled_back and registry.rollbacks == []
    assert outcome.decision.reason.startswith("waiting for labels")

    lowered = check_rollback(registry, NAME, summary, "auc", 0.05, min_labelled=50)
    assert lowered.rolled_back and lowered.metadata()["min_labelled"] == 50


def test_rollback_metric_is_the_primary_metric_when_tracked_else_auc() -> None:
    specs = {s.name: s for s in load_specs(sorted(CONFIG_DIR.glob("*.yaml")))}
    assert rollback_metric(specs["fraud"]) == "pr_auc"
    assert rollback_metric(specs["feed"]) == DEFAULT_METRIC == "auc"  # ndcg: not on labels
