"""Bad input in the features, labels and model sections: one located message per mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_spec_loading import _error, _feed_with, _line_of


@pytest.mark.parametrize(
    ("old", "new", "field", "message"),
    [
        (
            "{column: clicked, agg: mean, windows: [7d, 30d]}",
            "{column: clickz, agg: mean, windows: [7d, 30d]}",
            "features.user_activity.aggregates.1.column",
            "did you mean 'clicked'",
        ),
        (
            "entities: [user]\n    ttl: 30d",
            "entities: [usr]\n    ttl: 30d",
            "features.user_activity.entities.0",
            "did you mean 'user'",
        ),
        (
            "{agg: count, windows: [1d, 7d]}",
            "{agg: count, windows: [1d, 7 days]}",
            "features.user_activity.aggregates.0.windows",
            "7 days",
        ),
        (
            "attributes: [country, age_bucket]",
            "attributes: [country, age_bucket, height]",
            "features.user_activity.attributes.2",
            "entity column 'height' is not declared",
        ),
        (
            "negatives: {entity: item,",
            "negatives: {entity: itm,",
            "model.retrieval.negatives.entity",
            "did you mean 'item'",
        ),
        (
            "{column: clicked, agg: mean, windows: [7d, 30d]}",
            "{agg: mean, windows: [7d, 30d]}",
            "features.user_activity.aggregates.1",
            "needs a column",
        ),
    ],
)
def test_feature_mistakes_name_the_field(
    tmp_path: Path, old: str, new: str, field: str, message: str
) -> None:
    path = _feed_with(tmp_path, old, new)
    issues = _error(path).issues
    assert any(i.field == field and message in i.message for i in issues), [
        (i.field, i.message) for i in issues
    ]
    issue = next(i for i in issues if i.field == field)
    assert issue.file == str(path) and issue.line is not None
    # the line is the edited one (or, for a nested key, inside the edited block)
    assert abs(issue.line - _line_of(path, new.splitlines()[-1].strip())) <= 1


def test_label_maturity_must_parse(tmp_path: Path) -> None:
    path = _feed_with(
        tmp_path,
        "click: {column: clicked,",
        "click: {maturity: soon, column: clicked,",
    )
    (issue,) = _error(path).issues
    assert issue.field == "labels.click.maturity" and "soon" in issue.message


def test_unknown_baseline_is_named(tmp_path: Path) -> None:
    path = _feed_with(
        tmp_path,
        "    baseline: popularity\n    negatives",
        "    baseline: popularty\n    negatives",
    )
    (issue,) = _error(path).issues
    assert (
        issue.field == "model.retrieval.baseline" and "did you mean 'popularity'" in issue.message
    )


def test_baseline_feature_must_exist(tmp_path: Path) -> None:
    path = _feed_with(
        tmp_path,
        "    baseline: popularity\n    negatives",
        "    baseline: feature:item_popularity__clicks\n    negatives",
    )
    (issue,) = _error(path).issues
    assert issue.field == "model.retrieval.baseline" and "feature" in issue.message


def test_a_guardrail_on_an_unknown_label_is_named_when_the_config_loads(tmp_path: Path) -> None:
    path = _feed_with(
        tmp_path,
        "{metric: purchase, max_degradation: 0.05}",
        "{metric: purchse, max_degradation: 0.05}",
    )
    (issue,) = _error(path).issues
    assert issue.field == "experiment.guardrails.2.metric"
    assert "did you mean 'purchase'" in issue.message
