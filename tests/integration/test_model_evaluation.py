"""Issue 15, item 5: an evaluation the YAML shapes, materialized for real on real-shaped files.

Card fraud on the IEEE-CIS layout (chargebacks 7 days late): cards whose fraud was already known
are left out, new cards are reported apart, card precision@k is the gate's metric, and the
predictions table keeps each transaction's id. MovieLens ratings ranked per user: items a user
rated in the train split are left out of the test ranking. Every expectation is recomputed from
the files the test wrote, not from the code under test.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from assets.models.card_precision import card_precision_metrics
from dagster_project.use_case_files import load_use_cases
from resources.mlflow_resource import MLflowResource
from runtime import layout
from tests.conftest import write
from tests.integration.test_raw_assets import _run
from tests.real_shaped import RANKED_RATINGS_HEAD, ratings, transactions, transactions_config
from tests.written_tables import written_table

pytestmark = pytest.mark.integration

COLD_CARDS = 8
SCORER = "  scorer: {problem: binary_classification, labels: [fraud]}\n"


def _with_new_cards(frame: pd.DataFrame) -> pd.DataFrame:
    """Cards first seen late in the data (after the train split), a few rows each."""
    late = frame.index[(frame.index >= 2350) & (frame.index < 2600) & (frame.index % 3 == 0)]
    frame = frame.copy()
    frame.loc[late, "card1"] = 5000 + np.arange(len(late)) % COLD_CARDS
    return frame


def _fraud_config(folder: Path, units: str, params: str = "") -> Path:
    path = transactions_config(folder, frame=_with_new_cards(transactions()))
    text = path.read_text().replace(
        SCORER,
        "  scorer:\n    problem: binary_classification\n    labels: [fraud]\n"
        f"    evaluation: {{units: {units}, filter: {{drop_units_with_prior_label: is_fraud}}}}\n"
        + params,
    )
    text = text.replace(
        "metrics: {primary: pr_auc}", "metrics: {primary: card_precision, others: [pr_auc], k: [5]}"
    )
    return write(path, text)


def _model_event(result: dg.ExecuteInProcessResult, model: str):
    (event,) = [
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key.path[-2:] == ["models", f"{model}_model"]
    ]
    return event


def _known_before(csv: pd.DataFrame, delay: pd.Timedelta) -> dict[int, bool]:
    """transaction id -> an earlier fraud of its card had arrived (event + delay) before it."""
    times = pd.to_datetime(csv.TransactionDT, unit="s")
    arrivals = (times + delay)[csv.isFraud == 1].groupby(csv.card1[csv.isFraud == 1]).min()
    first = csv.card1.map(arrivals)
    return dict(zip(csv.TransactionID, (times > first).to_numpy(), strict=True))


def test_card_fraud_evaluation_shaped_by_the_yaml(tmp_path: Path) -> None:
    path = _fraud_config(tmp_path / "data", units="all")
    (spec,) = load_use_cases([path])
    instance = dg.DagsterInstance.ephemeral()
    first = _run(spec, tmp_path / "home", instance=instance)
    assert first.success
    event = _model_event(first, "scorer")
    metadata = {k: getattr(v, "value", v) for k, v in event.materialization.metadata.items()}
    predictions = first.asset_value(event.asset_key)
    training = written_table(first, layout.training_set_key(spec.name, "scorer"))
    csv = pd.read_csv(path.parent / "transactions.csv")

    # the predictions table keeps every test row, named by its transaction id
    test = training[training.split == "test"]
    assert predictions.transaction_id.is_unique and len(predictions) == len(test)
    assert set(predictions.transaction_id) <= set(csv.TransactionID)
    by_id = csv.set_index("TransactionID")
    assert (by_id.loc[predictions.transaction_id, "card1"].to_numpy() == predictions.card_id).all()

    # cards whose fraud had arrived (7 days after it) before the transaction are not evaluated
    known = _known_before(csv, pd.Timedelta("7D"))
    expected = ~predictions.transaction_id.map(known).to_numpy(dtype=bool)
    assert (predictions.evaluated.to_numpy() == expected).all()
    assert metadata["metric/dropped/prior_label"] == (~expected).sum() > 20

    # new cards (no train-split row) are reported apart
    cold = ~predictions.card_id.isin(training.card_id[training.split == "train"])
    assert (predictions.cold_unit == cold).all() and cold.sum() > 0
    assert metadata["metric/cold/units"] == predictions.card_id[cold & expected].nunique() > 0
    assert metadata["metric/cold/rows"] == (cold & expected).sum()
    assert metadata["metric/warm/rows"] == (~cold & expected).sum()

    # card precision@5 is the primary metric, recomputable from the table
    assert metadata["primary_metric"] == "card_precision@5"
    evaluated = predictions[predictions.evaluated]
    ours = card_precision_metrics(evaluated, "card_id", "event_time", "is_fraud", "score", (5,))
    assert metadata["metric/card_precision@5"] == pytest.approx(ours["card_precision@5"], abs=1e-4)
    assert "| card_precision@5 " in metadata["evaluation"]
    assert "| cold/log_loss " in metadata["evaluation"]

    # ... logged to MLflow beside the baseline's, parts and counts included
    registry = MLflowResource(home=str(tmp_path / "home"))
    logged = registry.client().get_run(metadata["mlflow_run_id"]).data.metrics
    for name in ("card_precision_at_5", "baseline.card_precision_at_5", "cold/log_loss"):
        assert name in logged, sorted(logged)
    assert logged["dropped/prior_label"] == (~expected).sum()

    # units: warm leaves the new cards out; the gate compares card precision on those rows
    weaker = "    params: {num_iterations: 3, num_leaves: 3}\n"
    warm = load_use_cases([_fraud_config(tmp_path / "warm", units="warm", params=weaker)])[0]
    second = _run(warm, tmp_path / "home", select="scorer_model", instance=instance)
    assert second.success
    event = _model_event(second, "scorer")
    warm_metadata = {k: getattr(v, "value", v) for k, v in event.materialization.metadata.items()}
    warm_predictions = second.asset_value(event.asset_key)
    assert warm_metadata["metric/dropped/cold_units"] == (cold & expected).sum()
    assert warm_metadata["metric/rows"] == (~cold & expected).sum()
    assert not any(k.startswith("metric/cold/") for k in warm_metadata)
    assert (warm_predictions.evaluated == (~cold & expected)).all()
    gate = next(c for c in second.get_asset_check_evaluations() if c.check_name == "promotion_gate")
    champion_on_warm = card_precision_metrics(
        evaluated[~evaluated.cold_unit], "card_id", "event_time", "is_fraud", "score", (5,)
    )["card_precision@5"]
    assert gate.metadata["delta"].value == pytest.approx(
        warm_metadata["metric/card_precision@5"] - champion_on_warm, abs=1e-3
    )


RANKED_RATINGS = (
    RANKED_RATINGS_HEAD
    + """\
split: {method: temporal, train: 0.7, validation: 0.15, test: 0.15}
features:
  user_taste:
    entities: [user]
    ttl: 30d
    aggregates:
      - {agg: count, windows: [7d]}
      - {column: rating, agg: mean, windows: [7d]}
model:
  ranking:
    problem: learning_to_rank
    labels: [liked]
    features: [user_taste]
    evaluation: {exclude_seen: all}
metrics: {primary: ndcg, k: [5]}
"""
)


def test_ratings_ranked_without_the_items_rated_in_train(tmp_path: Path) -> None:
    """exclude_seen: all leaves out every (user, movie) pair rated in the train split, liked
    or not; the item key travels in the training set though no feature view is keyed by it."""
    frame = ratings(n=3000, seed=1)
    frame = pd.concat([frame, frame.sample(400, random_state=2).assign(rating=1.0)])
    frame = frame.assign(timestamp=np.sort(frame.timestamp.to_numpy()) + np.arange(len(frame)))
    (tmp_path / "data").mkdir()
    frame.to_csv(tmp_path / "data" / "ratings.csv", index=False)
    (spec,) = load_use_cases([write(tmp_path / "data" / "ranked.yaml", RANKED_RATINGS)])
    result = _run(spec, tmp_path / "home")
    assert result.success
    event = _model_event(result, "ranking")
    metadata = {k: getattr(v, "value", v) for k, v in event.materialization.metadata.items()}
    predictions = result.asset_value(event.asset_key)
    training = written_table(result, layout.training_set_key(spec.name, "ranking"))
    train = training[training.split == "train"]
    rated = set(zip(train.user_id, train.item_id, strict=True))
    pairs = zip(predictions.user_id, predictions.item_id, strict=True)
    seen = np.array([pair in rated for pair in pairs])
    assert seen.sum() > 10 and metadata["metric/dropped/seen"] == seen.sum()
    assert (predictions.evaluated == ~seen).all()
    assert (
        metadata["metric/groups"] == predictions.user_id[~seen & (predictions.liked > 0)].nunique()
    )
