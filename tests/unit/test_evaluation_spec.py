"""``model.<m>.evaluation`` and ``card_precision`` are validated at load time, naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from configs.schema import SpecError
from dagster_project.use_case_files import load_use_cases
from tests.conftest import write
from tests.real_shaped import letor_config, transactions_config

SCORER = "  scorer: {problem: binary_classification, labels: [fraud]}\n"


def _scorer(tmp_path: Path, evaluation: str = "", metrics: str | None = None) -> Path:
    """The card-fraud fixture's YAML with the scorer's ``evaluation`` and ``metrics`` set."""
    path = transactions_config(tmp_path)
    text = path.read_text()
    block = "  scorer:\n    problem: binary_classification\n    labels: [fraud]\n"
    text = text.replace(SCORER, block + (f"    evaluation: {evaluation}\n" if evaluation else ""))
    if metrics is not None:
        text = text.replace("metrics: {primary: pr_auc}", f"metrics: {metrics}")
    return write(path, text)


def _issues(path: Path) -> list:
    with pytest.raises(SpecError) as caught:
        load_use_cases([path])
    return caught.value.issues


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def test_a_full_evaluation_section_loads(tmp_path: Path) -> None:
    path = _scorer(
        tmp_path,
        "{unit: card, units: warm, filter: {drop_units_with_prior_label: fraud}}",
        "{primary: card_precision, others: [pr_auc, card_precision], k: [100]}",
    )
    (spec,) = load_use_cases([path])
    evaluation = spec.model["scorer"].evaluation
    assert (evaluation.unit, evaluation.units) == ("card", "warm")
    assert evaluation.filter.drop_units_with_prior_label == "fraud"
    assert spec.metrics.primary == "card_precision"
    # the label's column names it as well as its name does ("drop cards known compromised")
    (spec,) = load_use_cases(
        [_scorer(tmp_path / "by_column", "{filter: {drop_units_with_prior_label: is_fraud}}")]
    )
    assert spec.model["scorer"].evaluation.exclude_seen is None  # the problem's default


@pytest.mark.parametrize(
    ("evaluation", "field", "message"),
    [
        ("{units: cold}", "model.scorer.evaluation.units", "'warm' or 'all'"),
        ("{unit: cards}", "model.scorer.evaluation.unit", "did you mean 'card'?"),
        ("{exclude_seen: everything}", "model.scorer.evaluation.exclude_seen", "train_positives"),
        (
            "{exclude_seen: all}",
            "model.scorer.evaluation.exclude_seen",
            "a classifier scores each row",
        ),
        (
            "{filter: {drop_units_with_prior_label: fruad}}",
            "model.scorer.evaluation.filter.drop_units_with_prior_label",
            "did you mean 'fraud'?",
        ),
        (
            "{filter: {drop_cards: fraud}}",
            "model.scorer.evaluation.filter.drop_cards",
            "unknown key (allowed here: drop_units_with_prior_label)",
        ),
    ],
)
def test_a_wrong_option_names_its_field_and_line(
    tmp_path: Path, evaluation: str, field: str, message: str
) -> None:
    path = _scorer(tmp_path, evaluation)
    (issue,) = _issues(path)
    assert issue.field.startswith(field), issue
    assert message in issue.message, issue.message
    assert issue.line == _line_of(path, "evaluation:")


def test_card_precision_needs_a_classifier_gate_and_time(tmp_path: Path) -> None:
    path, _, _ = letor_config(tmp_path)
    text = path.read_text().replace(
        "metrics: {primary: ndcg, k: [10]}", "metrics: {primary: card_precision, k: [10]}"
    )
    issues = _issues(write(path, text))
    messages = {issue.field: [] for issue in issues}
    for issue in issues:
        messages[issue.field].append(issue.message)
    (field,) = messages
    assert field == "metrics.primary"
    shown = " ".join(messages[field])
    assert "needs events.timestamp" in shown
    assert "applies to binary_classification models, and there is none" in shown
    assert "promotion gate of model 'ranking' (learning_to_rank)" in shown


def test_a_ranker_needs_an_item_besides_the_unit_to_exclude_seen(tmp_path: Path) -> None:
    path, _, _ = letor_config(tmp_path)
    text = path.read_text().replace(
        "  ranking: {problem: learning_to_rank, labels: [relevance], features: [letor]}",
        "  ranking:\n    problem: learning_to_rank\n    labels: [relevance]\n"
        "    features: [letor]\n    evaluation: {exclude_seen: train_positives}",
    )
    (issue,) = _issues(write(path, text))
    assert issue.field == "model.ranking.evaluation.exclude_seen"
    assert "needs an item entity besides the unit ('query_id')" in issue.message
