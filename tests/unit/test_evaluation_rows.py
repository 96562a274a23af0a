"""Which test rows a model is judged on: warm and cold units, known positives, seen items."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from assets.models.evaluation import compare, higher_is_better
from assets.models.evaluation_rows import (
    COLD_UNIT,
    EVALUATED,
    PartTotals,
    evaluation_columns,
    plan_evaluation,
    prior_positive_column,
    retrieval_options,
)
from assets.models.retrieval_eval import evaluate_retrieval, popularity_baseline
from configs.schema.issues import SpecFieldError
from dagster_project.use_case_files import load_use_cases
from tests.conftest import write
from tests.real_shaped import RANKED_RATINGS_HEAD, ratings, transactions, transactions_config

FILTER = "    evaluation: {filter: {drop_units_with_prior_label: is_fraud}}\n"


def _with_evaluation(path: Path, evaluation: str) -> Path:
    """The fixture's YAML with the scorer written out block-style, ``evaluation`` under it."""
    text = path.read_text()
    old = "  scorer: {problem: binary_classification, labels: [fraud]}\n"
    assert old in text
    new = "  scorer:\n    problem: binary_classification\n    labels: [fraud]\n" + evaluation
    return write(path, text.replace(old, new))


def _events(frame: pd.DataFrame) -> pd.DataFrame:
    """The CSV as the raw events hold it: declared names, times as timestamps."""
    events = frame.rename(
        columns={
            "TransactionID": "transaction_id",
            "TransactionDT": "event_time",
            "TransactionAmt": "amount",
            "ProductCD": "product",
            "card1": "card_id",
            "isFraud": "is_fraud",
        }
    )
    events["event_time"] = pd.to_datetime(events.event_time, unit="s")
    if "label_time" in events:
        events["label_time"] = pd.to_datetime(events.label_time, unit="s")
    return events


def _brute_force(events: pd.DataFrame, known: pd.Series) -> np.ndarray:
    """Row by row: did an earlier fraud of the same card become known before this row?"""
    frauds = events.assign(known=known)[events.is_fraud == 1]
    out = np.zeros(len(events), dtype=bool)
    for i, (card, time) in enumerate(zip(events.card_id, events.event_time, strict=True)):
        mine = frauds[frauds.card_id == card]
        out[i] = bool((mine.known < time).any())
    return out


def test_prior_positive_respects_a_fixed_delay(tmp_path: Path) -> None:
    frame = transactions(n=2000, seed=5)
    (spec,) = load_use_cases([_with_evaluation(transactions_config(tmp_path), FILTER)])
    events = _events(frame)
    columns = evaluation_columns(spec, "scorer", events)
    flag = prior_positive_column(spec, "scorer")
    assert flag == "prior_positive_is_fraud" and "__" not in flag  # "__" would make it a feature
    assert set(columns) == {"card_id", "transaction_id", flag}
    expected = _brute_force(events, events.event_time + pd.Timedelta("7D"))
    assert (columns[flag].to_numpy() == expected).all() and expected.sum() > 50
    # a fraud counts from its arrival, not from the transaction: some rows would flip without it
    at_event = _brute_force(events, events.event_time)
    assert (at_event & ~expected).sum() > 0


def test_prior_positive_reads_a_label_time_column(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    frame = transactions(n=2000, seed=6)
    frame["label_time"] = frame.TransactionDT + rng.integers(3_600, 20 * 86_400, len(frame))
    path = transactions_config(tmp_path, rule=", available_at: label_time", frame=frame)
    text = path.read_text().replace(
        "    is_fraud: {dtype", "    label_time: timestamp\n    is_fraud: {dtype"
    )
    (spec,) = load_use_cases([_with_evaluation(write(path, text), FILTER)])
    events = _events(frame)
    flag = evaluation_columns(spec, "scorer", events)["prior_positive_is_fraud"]
    expected = _brute_force(events, events.label_time)
    assert (flag.to_numpy() == expected).all() and expected.sum() > 50


def _split(events: pd.DataFrame, cold_cards: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The first 70% of rows as train, the last 15% as test, ``cold_cards`` new cards in it."""
    train = events.iloc[: int(len(events) * 0.7)].reset_index(drop=True)
    test = events.iloc[int(len(events) * 0.85) :].reset_index(drop=True)
    if cold_cards:
        new = test.index[: cold_cards * 5]
        test.loc[new, "card_id"] = 9_000 + np.arange(len(new)) % cold_cards
    return train, test


def test_units_warm_keeps_only_cards_seen_in_train_and_all_reports_them_apart(
    tmp_path: Path,
) -> None:
    events = _events(transactions(n=3000, seed=7))
    train, test = _split(events, cold_cards=6)
    cold = ~test.card_id.isin(train.card_id)
    for units in ("all", "warm"):
        path = _with_evaluation(
            transactions_config(tmp_path / units), f"    evaluation: {{units: {units}}}\n"
        )
        (spec,) = load_use_cases([path])
        plan = plan_evaluation(spec, "scorer", train, test, "is_fraud")
        assert (plan.cold == cold.to_numpy()).all() and cold.sum() == 30
        counted = plan.metrics(lambda rows: {"rows": float(rows.sum())}, test)
        if units == "warm":
            assert counted["rows"] == (~cold).sum() and counted["dropped/cold_units"] == 30
            assert "cold/rows" not in counted
        else:
            assert counted["rows"] == len(test)
            assert counted["cold/rows"] == 30 and counted["warm/rows"] == len(test) - 30
            assert counted["cold/units"] == 6
        table = plan.annotate(test)
        assert (table[EVALUATED] == plan.evaluated).all() and (table[COLD_UNIT] == cold).all()


def test_the_filter_drops_flagged_rows_and_fails_on_an_old_training_set(tmp_path: Path) -> None:
    (spec,) = load_use_cases([_with_evaluation(transactions_config(tmp_path), FILTER)])
    events = _events(transactions(n=3000, seed=8))
    events = events.assign(**evaluation_columns(spec, "scorer", events))
    train, test = _split(events)
    plan = plan_evaluation(spec, "scorer", train, test, "is_fraud")
    flagged = test.prior_positive_is_fraud.to_numpy()
    assert (plan.evaluated == ~flagged).all() and plan.dropped == {"prior_label": flagged.sum()}
    with pytest.raises(SpecFieldError) as caught:
        plan_evaluation(spec, "scorer", train, test.drop(columns="prior_positive_is_fraud"), "x")
    assert caught.value.issue.field == "model.scorer.evaluation.filter.drop_units_with_prior_label"
    assert caught.value.issue.line is not None and "materialize it again" in str(caught.value)
    # nothing left: every test row flagged
    with pytest.raises(SpecFieldError, match="no test row is left") as caught:
        plan_evaluation(spec, "scorer", train, test.assign(prior_positive_is_fraud=True), "x")
    assert caught.value.issue.field == "model.scorer.evaluation"


RANKED_RATINGS = (
    RANKED_RATINGS_HEAD
    + """\
model:
  ranking:
    problem: learning_to_rank
    labels: [liked]
    evaluation: {exclude_seen: SEEN}
metrics: {primary: ndcg}
"""
)


@pytest.mark.parametrize("seen", ["all", "train_positives", "none"])
def test_exclude_seen_drops_the_pairs_seen_in_train(tmp_path: Path, seen: str) -> None:
    ratings().to_csv(tmp_path / "ratings.csv", index=False)
    path = write(tmp_path / "ranked.yaml", RANKED_RATINGS.replace("SEEN", seen))
    (spec,) = load_use_cases([path])
    events = ratings().rename(columns={"userId": "user_id", "movieId": "item_id"})
    events["liked"] = (events.rating >= 4).astype(int)
    train, test = events.iloc[:2000], events.iloc[2000:].reset_index(drop=True)
    plan = plan_evaluation(spec, "ranking", train, test, "liked")
    rated = set(zip(train.user_id, train.item_id, strict=True))
    liked = set(zip(train.user_id[train.liked == 1], train.item_id[train.liked == 1], strict=True))
    pairs = list(zip(test.user_id, test.item_id, strict=True))
    removed = {"all": rated, "train_positives": liked, "none": set()}[seen]
    expected = np.array([pair not in removed for pair in pairs])
    assert (plan.evaluated == expected).all()
    if seen != "none":
        assert plan.dropped["seen"] == (~expected).sum() > 0
    assert len(liked) < len(rated)  # the two rules differ on this data


def test_part_totals_average_each_part_over_its_own_users() -> None:
    totals = PartTotals(warm_users={"a", "b"})
    totals.add("a", {"recall@1": 1.0})
    totals.add("b", {"recall@1": 0.0})
    totals.add("c", {"recall@1": 1.0})
    assert totals.means() == {
        "recall@1": pytest.approx(2 / 3),
        "warm/recall@1": 0.5,
        "cold/recall@1": 1.0,
        "warm/users": 2.0,
        "cold/users": 1.0,
    }
    only_warm = PartTotals(warm_users={"a"})
    only_warm.add("a", {"recall@1": 1.0})
    assert only_warm.means() == {"recall@1": 1.0, "warm/users": 1.0, "cold/users": 0.0}


def test_retrieval_options_change_what_is_removed_and_who_counts() -> None:
    items = np.array([10, 11, 12, 13])
    vectors = np.eye(4, dtype=np.float32)
    # u1 prefers 10 then 11; u2 (cold: no vector, popularity fallback) gets 12 first
    users = {"u1": np.array([1.0, 0.9, 0.0, 0.0], dtype=np.float32)}
    train_pos = pd.DataFrame({"user": ["u1", "u3"], "item": [12, 12]})
    shown = pd.DataFrame({"user": ["u1", "u1"], "item": [10, 12]})  # u1 saw 10, did not click
    test_pos = pd.DataFrame({"user": ["u1", "u1", "u2"], "item": [10, 11, 12]})
    common = (users, items, vectors, train_pos, test_pos, "user", "item", (1,))
    fallback = np.array([0.0, 0.0, 5.0, 0.0], dtype=np.float32)
    plain = evaluate_retrieval(*common, fallback_scores=fallback)
    assert plain["recall@1"] == pytest.approx((0.5 + 1.0) / 2)  # u1 finds 10 of {10, 11}
    seen_all = evaluate_retrieval(*common, fallback_scores=fallback, seen=shown)
    # 10 was seen: removed from the ranking and the relevant set; u1 now finds 11 of {11}
    assert seen_all["recall@1"] == 1.0
    parts = evaluate_retrieval(*common, fallback_scores=fallback, warm_users={"u1", "u3"})
    assert parts["warm/recall@1"] == 0.5 and parts["cold/recall@1"] == 1.0
    warm = evaluate_retrieval(*common, fallback_scores=fallback, warm_users={"u1"}, units="warm")
    assert warm["users"] == 1.0 and warm["recall@1"] == 0.5 and "cold/recall@1" not in warm
    popular = popularity_baseline(items, train_pos, test_pos, "user", "item", (1,), units="warm")
    assert popular["users"] == 2.0  # no warm_users given: nobody is left out
    popular = popularity_baseline(
        items, train_pos, test_pos, "user", "item", (1,), warm_users={"u1"}, units="warm"
    )
    assert popular["users"] == 1.0


def test_parts_and_counts_compare_as_their_metric_or_not_at_all() -> None:
    assert not higher_is_better("cold/log_loss") and higher_is_better("warm/ndcg@10")
    table = compare(
        {"auc": 0.8, "cold/auc": 0.6, "cold/units": 5.0, "dropped/seen": 3.0, "cold/ece": 0.1},
        {"auc": 0.7, "cold/auc": 0.65, "cold/units": 5.0, "dropped/seen": 3.0, "cold/ece": 0.2},
    )
    assert table.metric.tolist() == ["auc", "cold/auc", "cold/ece"]
    assert table.better.tolist() == [True, False, True]


def test_without_the_unit_column_only_what_needs_it_fails(tmp_path: Path) -> None:
    """A training set from before evaluation options has no unit column: the default evaluation
    still runs on every row, and an option that needs units says what to do."""
    events = _events(transactions(n=1000, seed=9)).drop(columns="card_id")
    train, test = _split(events)
    (spec,) = load_use_cases([transactions_config(tmp_path / "plain")])
    plan = plan_evaluation(spec, "scorer", train, test, "is_fraud")
    assert plan.evaluated.all() and not plan.cold.any()
    assert plan.metrics(lambda rows: {"rows": float(rows.sum())}, test) == {"rows": len(test)}
    path = _with_evaluation(
        transactions_config(tmp_path / "warm"), "    evaluation: {units: warm}\n"
    )
    (spec,) = load_use_cases([path])
    with pytest.raises(SpecFieldError, match="no 'card_id' column") as caught:
        plan_evaluation(spec, "scorer", train, test, "is_fraud")
    assert caught.value.issue.field == "model.scorer.evaluation.unit"


@pytest.mark.parametrize("seen", ["all", "train_positives", "none"])
def test_retrieval_options_follow_the_yaml(tmp_path: Path, seen: str) -> None:
    ratings().to_csv(tmp_path / "ratings.csv", index=False)
    text = RANKED_RATINGS.replace("SEEN", seen).replace("learning_to_rank", "two_tower")
    text = text.replace("evaluation: {", "evaluation: {units: warm, ")
    (spec,) = load_use_cases([write(tmp_path / "ranked.yaml", text)])
    train = ratings().rename(columns={"userId": "user_id", "movieId": "item_id"}).iloc[:1500]
    train = train.assign(liked=(train.rating >= 4).astype(int))
    options = retrieval_options(spec, "ranking", train, "liked")
    assert options["units"] == "warm" and options["warm_users"] == set(train.user_id)
    expected = {"all": len(train), "train_positives": int(train.liked.sum()), "none": 0}[seen]
    assert len(options["seen"]) == expected
