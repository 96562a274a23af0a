"""Delayed-label performance and the rollback rule on hand-made request logs and events."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from assets.monitoring.performance import (
    LABELLED,
    PENDING,
    UNMATCHED,
    ClassifierTarget,
    classification_metrics,
    classifier_target,
    join_labels,
    logged_predictions,
    performance_table,
    summary_of,
    version_summary,
)
from assets.monitoring.rollback import rollback_decision
from configs import CONFIG_DIR
from configs.schema import load_specs

DAY = pd.Timestamp("2025-03-01")
TARGET = ClassifierTarget(
    model="scorer",
    label="is_fraud",
    available_at="label_time",
    maturity=pd.Timedelta("10D"),
    key="transaction_id",
    timestamp="event_time",
)


def _log(rows: list[dict]) -> pd.DataFrame:
    """A request log as ``read_request_log`` returns it (JSON columns decoded)."""
    return pd.DataFrame(
        [
            {
                "id": i,
                "logged_at": r.get("at", DAY + pd.Timedelta(hours=1)).timestamp(),
                "endpoint": r.get("endpoint", "score"),
                "unit": "1",
                "arm": "champion",
                "request": r.get("request") or {"transaction": {"transaction_id": r["id"]}},
                "model_versions": {"scorer": r.get("version", "1")},
                "features": {},
                "scores": {"probability": r["score"], "margin": 0.0},
                "response": {"probability": r["score"], "decision": r.get("decision")},
                "feature_misses": 0,
                "latency_ms": 1.0,
            }
            for i, r in enumerate(rows)
        ]
    )


def _events(labels: dict[int, tuple[int, pd.Timestamp]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "transaction_id": list(labels),
            "event_time": [DAY] * len(labels),
            "is_fraud": [y for y, _ in labels.values()],
            "label_time": [t for _, t in labels.values()],
            "amount": 1.0,
        }
    )


def test_target_comes_from_the_spec_and_only_classifier_endpoints_are_tracked() -> None:
    specs = {s.name: s for s in load_specs(sorted(CONFIG_DIR.glob("*.yaml")))}
    fraud = classifier_target(specs["fraud"])
    assert fraud is not None
    assert (fraud.model, fraud.label, fraud.available_at, fraud.key) == (
        "scorer",
        "is_fraud",
        "label_time",
        "transaction_id",
    )
    assert classifier_target(specs["feed"]) is None  # /recommend: a slate, not a prediction
    assert classifier_target(specs["search"]) is None


def test_pending_and_unmatched_labels_are_excluded_and_counted() -> None:
    as_of = DAY + pd.Timedelta(days=5)
    events = _events(
        {
            1: (1, DAY + pd.Timedelta(days=2)),  # chargeback arrived
            2: (0, DAY + pd.Timedelta(days=3)),  # final negative
            3: (1, DAY + pd.Timedelta(days=9)),  # chargeback still to come
            4: (0, as_of),  # known exactly at as_of
        }
    )
    log = _log(
        [
            {"id": 1, "score": 0.9, "decision": "decline"},
            {"id": 2, "score": 0.2, "decision": "approve"},
            {"id": 3, "score": 0.8, "decision": "review"},
            {"id": 4, "score": 0.1, "decision": "approve"},
            {"id": 99, "score": 0.5, "decision": "review"},  # not in the events (yet)
            {"id": "4", "score": 0.3, "decision": "approve"},  # a key sent as text still joins
            {"request": {"transaction": {"card_id": 1}}, "score": 0.5},  # no key at all
            {"id": 1, "endpoint": "health", "score": 0.0},  # another endpoint: not a prediction
        ]
    )
    joined = join_labels(logged_predictions(log, TARGET), events, TARGET, as_of)
    assert joined.frame["status"].tolist() == [
        LABELLED,
        LABELLED,
        PENDING,
        LABELLED,
        UNMATCHED,
        LABELLED,
    ]
    assert joined.frame["label"].tolist()[:2] == [1, 0]
    assert joined.frame["label"].isna().tolist()[2:5] == [True, False, True]
    assert joined.unkeyed == 1
    (row,) = performance_table(joined).to_dict("records")
    assert (row["predictions"], row["labelled"], row["pending"], row["unmatched"]) == (6, 4, 1, 1)
    assert (row["positives"], row["predicted_positive"]) == (1, 1)
    assert row["precision"] == 1.0 and row["recall"] == 1.0 and row["auc"] == 1.0

    early = join_labels(logged_predictions(log, TARGET), events, TARGET, DAY + pd.Timedelta(10))
    assert early.count(PENDING) == 5  # nanoseconds after the day: nothing known yet
    final = join_labels(
        logged_predictions(log, TARGET), events, TARGET, DAY + pd.Timedelta(days=10)
    )
    assert final.count(PENDING) == 0 and final.count(LABELLED) == 5  # 3's chargeback arrived
    assert final.frame["label"].iloc[2] == 1


def test_a_label_without_available_at_is_known_after_its_maturity() -> None:
    target = ClassifierTarget(
        "scorer", "is_fraud", None, pd.Timedelta("2D"), "transaction_id", "event_time"
    )
    events = _events({1: (1, pd.NaT)})
    log = _log([{"id": 1, "score": 0.9}])
    predictions = logged_predictions(log, target)
    assert join_labels(predictions, events, target, DAY + pd.Timedelta("1D")).count(PENDING) == 1
    assert join_labels(predictions, events, target, DAY + pd.Timedelta("2D")).count(LABELLED) == 1


def test_metrics_split_by_version_and_day_and_match_sklearn() -> None:
    rng = np.random.default_rng(3)
    n = 400
    labels = (rng.random(n) < 0.2).astype(int)
    scores = np.clip(labels * 0.3 + rng.random(n) * 0.7, 0, 1)
    versions = np.where(np.arange(n) % 2 == 0, "1", "2")
    days = np.where(np.arange(n) < 300, 0, 1)
    events = _events({i: (int(labels[i]), DAY) for i in range(n)})
    log = _log(
        [
            {
                "id": i,
                "score": float(scores[i]),
                "decision": "decline" if scores[i] > 0.6 else "approve",
                "version": versions[i],
                "at": DAY + pd.Timedelta(days=int(days[i]), hours=2),
            }
            for i in range(n)
        ]
    )
    joined = join_labels(
        logged_predictions(log, TARGET), events, TARGET, DAY + pd.Timedelta(days=30)
    )
    table = performance_table(joined)
    assert list(zip(table["version"], table["day"].dt.day, strict=True)) == [
        ("1", 1),
        ("1", 2),
        ("2", 1),
        ("2", 2),
    ]
    for row in table.itertuples():
        mask = (versions == row.version) & (days == row.day.day - 1)
        y, s = labels[mask], scores[mask]
        assert row.labelled == mask.sum() and row.positives == y.sum()
        assert row.auc == pytest.approx(roc_auc_score(y, s))
        assert row.pr_auc == pytest.approx(average_precision_score(y, s))
        decided = s > 0.6
        assert row.precision == pytest.approx((y[decided] == 1).mean())
        assert row.recall == pytest.approx(decided[y == 1].mean())
    summary = version_summary(joined)
    assert summary["labelled"].tolist() == [200, 200]
    one = summary_of(summary, "1")
    assert one["auc"] == pytest.approx(
        roc_auc_score(labels[versions == "1"], scores[versions == "1"])
    )
    assert summary_of(summary, "7") is None and summary_of(summary, None) is None
    # a threshold instead of the served decision
    strict = performance_table(joined, threshold=0.95)
    assert (strict["predicted_positive"] < table["predicted_positive"]).all()


def test_one_class_gives_none_never_nan() -> None:
    metrics = classification_metrics([0, 0, 0], [0.1, 0.5, 0.9], [0.0, 1.0, np.nan])
    assert metrics["auc"] is None and metrics["pr_auc"] is None
    assert metrics["recall"] is None  # no positive among the decided rows
    assert metrics["precision"] == 0.0 and metrics["predicted_positive"] == 1
    assert classification_metrics([], [], [])["precision"] is None
    events = _events({1: (0, DAY), 2: (0, DAY)})
    log = _log([{"id": 1, "score": 0.1}, {"id": 2, "score": 0.2}])  # no decisions served
    table = performance_table(join_labels(logged_predictions(log, TARGET), events, TARGET, DAY))
    assert table[["precision", "recall", "auc", "pr_auc"]].isna().all(axis=None)
    assert str(table["auc"].dtype) == "Float64"  # pd.NA, not NaN
    summary = summary_of(
        version_summary(join_labels(logged_predictions(log, TARGET), events, TARGET, DAY)), "1"
    )
    assert summary["auc"] is None and summary["labelled"] == 2


def test_empty_log_gives_an_empty_table() -> None:
    joined = join_labels(logged_predictions(pd.DataFrame(), TARGET), _events({}), TARGET, DAY)
    assert performance_table(joined).empty and version_summary(joined).empty


def _numbers(value: float | None, labelled: int = 1000, positives: int = 50) -> dict:
    return {"labelled": labelled, "positives": positives, "pr_auc": value}


@pytest.mark.parametrize(
    ("champion", "previous", "roll_back", "reason"),
    [
        (_numbers(0.50), _numbers(0.60), True, "beyond margin"),
        (_numbers(0.595), _numbers(0.60), False, "within margin"),
        (_numbers(0.70), _numbers(0.60), False, "within margin"),
        (_numbers(0.10, labelled=150), _numbers(0.60), False, "fewer than 200"),
        (_numbers(0.10), _numbers(0.60, positives=2), False, "positive labels, fewer than 5"),
        (None, _numbers(0.60), False, "no logged predictions"),
        (_numbers(None), _numbers(0.60), False, "undefined"),
    ],
)
def test_rollback_rule(champion, previous, roll_back, reason) -> None:
    decision = rollback_decision("2", champion, "1", previous, "pr_auc", margin=0.01)
    assert decision.roll_back is roll_back
    assert reason in decision.reason
    if roll_back:
        assert decision.delta == pytest.approx(-0.10)
        assert (decision.champion_version, decision.previous_version) == ("2", "1")


def test_rollback_needs_a_previous_champion_and_respects_direction() -> None:
    assert (
        "no previous champion"
        in rollback_decision("1", _numbers(0.1), None, None, "pr_auc", 0).reason
    )
    assert rollback_decision(None, None, None, None, "pr_auc", 0).reason == "no champion"
    lower = rollback_decision(
        "2", _numbers(0.30), "1", _numbers(0.20), "pr_auc", 0.05, higher_is_better=False
    )
    assert lower.roll_back  # a loss going up by more than the margin
    with pytest.raises(ValueError, match="margin"):
        rollback_decision("2", _numbers(0.3), "1", _numbers(0.2), "pr_auc", -1)
