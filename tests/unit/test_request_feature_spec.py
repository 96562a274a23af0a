"""Request-time features in the YAML: the grammar, and each mistake as one located message.

The shipped fraud config declares them (``features.transaction.request``); each case below edits
one expression of a copy and expects the loader to name its file, line and field, and say what is
wrong: an unknown transform or column (with a did-you-mean), a transform given the wrong kind of
column, a label read at request time, a feature Feast cannot hand an on-demand view, a model that
cannot compute it where it is served.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from configs import CONFIG_DIR
from configs.schema import SpecError, load_spec
from configs.schema.consistency import cross_check
from configs.schema.request_checks import check_request_features, readable_columns
from configs.schema.request_expressions import TRANSFORMS, parse_expression
from dagster_project.use_case_files import load_use_cases
from tests.conftest import write

ABROAD = "abroad: differs(country, card_velocity_attributes__home_country)"


def _fraud_with(tmp_path: Path, old: str, new: str) -> Path:
    text = (CONFIG_DIR / "fraud.yaml").read_text()
    assert old in text, old
    return write(tmp_path / "fraud.yaml", text.replace(old, new, 1))


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def _issues(path: Path) -> list:
    with pytest.raises(SpecError) as caught:
        load_spec(path, extra_checks=[check_request_features])
    return caught.value.issues


def test_the_shipped_fraud_features_parse_and_check() -> None:
    spec = load_spec(CONFIG_DIR / "fraud.yaml", extra_checks=[check_request_features])
    request = spec.features["transaction"].request
    assert request["amount_vs_card_mean"] == "ratio(amount, card_velocity__amount_mean_30d)"
    assert spec.features["transaction"].entities == []
    assert check_request_features(spec) == []


@pytest.mark.parametrize(
    ("text", "transform", "columns", "zone"),
    [
        ("amount", None, ("amount",), None),
        (" log1p( amount ) ", "log1p", ("amount",), None),
        ("hour_of_day(event_time, 'Europe/Paris')", "hour_of_day", ("event_time",), "Europe/Paris"),
        ('is_night(event_time, "UTC")', "is_night", ("event_time",), "UTC"),
        ("ratio(a,b)", "ratio", ("a", "b"), None),
    ],
)
def test_expressions_parse(text: str, transform: str | None, columns: tuple, zone: str) -> None:
    parsed = parse_expression(text)
    assert (parsed.transform, parsed.columns, parsed.zone) == (transform, columns, zone)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("log(amount)", "unknown transform 'log'; did you mean 'log1p'?"),
        ("ratio(amount)", "ratio takes 2 argument(s)"),
        ("log1p()", "got no argument"),
        ("log1p(amount, 'UTC')", "log1p takes 1 argument(s)"),
        ("hour_of_day(event_time, 'Mars/Olympus')", "unknown time zone 'Mars/Olympus'"),
        ("hour_of_day(event_time, UTC)", "a time zone in quotes"),
        ("log1p(ratio(amount, hour))", "nothing nests"),
        ("amount * 2", "no operators"),
        ("__import__('os').system('true')", "unknown transform '__import__'"),
        ("", "expected a column name or a transform"),
    ],
)
def test_grammar_mistakes_name_the_feature(tmp_path: Path, expression: str, message: str) -> None:
    path = _fraud_with(tmp_path, "amount_log: log1p(amount)", f'amount_log: "{expression}"')
    (issue,) = _issues(path)
    assert issue.field == "features.transaction.request.amount_log"
    assert issue.line == _line_of(path, "amount_log:")
    assert message in issue.message, issue.message


def test_a_name_that_is_no_column_name_is_refused(tmp_path: Path) -> None:
    path = _fraud_with(tmp_path, "amount_log: log1p", "amount__log: log1p")
    (issue,) = _issues(path)
    assert issue.field.startswith("features.transaction.request")
    assert "single underscores" in issue.message and "'amount__log'" in issue.message


@pytest.mark.parametrize(
    ("new", "message"),
    [
        (
            "abroad: differs(country, card_velocity_attributes__home_contry)",
            "did you mean 'card_velocity_attributes__home_country'?",
        ),
        ("abroad: log1p(amout)", "did you mean 'amount'?"),
        ("abroad: log1p(country)", "takes a number column"),
        ("abroad: hour_of_day(amount)", "takes a timestamp column; 'amount' is a number"),
        ("abroad: differs(country, amount)", "'country' is a string and 'amount' a number"),
        ("abroad: differs(event_time, label_time)", "label_time"),
        ("abroad: log1p(is_fraud)", "outcome of labels.fraud"),
        ("abroad: is_fraud", "label leakage"),
        ("abroad: card_velocity__is_fraud_sum_30d", "already a feature"),
        ("abroad: event_time", "hour_of_day(event_time)"),
        (
            "abroad: ratio(amount, card_velocity__seconds_since_last_30d)",
            "time_since_last aggregate",
        ),
        ("abroad: differs(event_time, event_time)", "not times"),
    ],
)
def test_column_mistakes_name_the_feature(tmp_path: Path, new: str, message: str) -> None:
    path = _fraud_with(tmp_path, ABROAD, new)
    issues = _issues(path)
    assert [i.field for i in issues] == ["features.transaction.request.abroad"], issues
    assert issues[0].line == _line_of(path, "abroad:")
    assert message in issues[0].message, issues[0].message


def test_a_model_reads_the_views_its_request_features_read(tmp_path: Path) -> None:
    path = _fraud_with(
        tmp_path, "    labels: [fraud]\n", "    labels: [fraud]\n    features: [transaction]\n"
    )
    messages = [(i.field, i.message) for i in _issues(path)]
    assert (
        "features.transaction.request.amount_vs_card_mean",
        "model 'scorer' reads this feature but not view 'card_velocity', whose"
        " 'card_velocity__amount_mean_30d' it takes: add 'card_velocity' to"
        " model.scorer.features",
    ) in messages


def test_only_the_scoring_endpoint_computes_request_features(tmp_path: Path) -> None:
    text = (CONFIG_DIR / "feed.yaml").read_text()
    marker = "features:\n"
    assert marker in text
    path = write(
        tmp_path / "feed.yaml",
        text.replace(
            marker, marker + "  context:\n    request: {hour: hour_of_day(event_time)}\n", 1
        ),
    )
    issues = _issues(path)
    assert issues and all(i.field == "features.context.request.hour" for i in issues)
    assert "computed at serving by /score (binary_classification) only" in issues[0].message


def test_a_view_without_entities_holds_only_request_features(tmp_path: Path) -> None:
    path = _fraud_with(
        tmp_path,
        "  transaction:\n    request:\n",
        "  transaction:\n    attributes: [mcc]\n    request:\n",
    )
    (issue,) = _issues(path)
    assert issue.field == "features.transaction"
    assert "name the view's entities" in issue.message


def test_known_columns_match_the_feature_tables_built() -> None:
    """The kinds the checks give joined features follow the tables the pipeline builds."""
    from assets.features.views import feature_tables

    for config in ("fraud", "feed", "search"):
        (spec,) = load_use_cases([CONFIG_DIR / f"{config}.yaml"])
        built = {
            f"{table.name}__{name}": dtype
            for table in feature_tables(spec)
            for name, dtype in table.features
        }
        known = {name: c for name, c in readable_columns(spec).items() if c.table is not None}
        assert set(built) <= set(known), set(built) - set(known)
        for name, dtype in built.items():
            kind = known[name].kind
            if dtype in ("int", "float"):
                assert kind == "number", name
            elif dtype == "string":
                assert kind == "string", name
            else:  # times and id lists: refused, with a reason
                assert kind is None and known[name].refused, name


def test_every_transform_is_documented_in_the_schema() -> None:
    from configs.schema.stages import FeatureViewSpec

    described = FeatureViewSpec.model_fields["request"].description or ""
    assert all(name in described for name in TRANSFORMS)


def test_validation_reports_them_without_being_asked(tmp_path: Path) -> None:
    """``playbook validate`` (the loader's cross-section checks) runs the request checks."""
    path = _fraud_with(tmp_path, ABROAD, "abroad: log1p(amout)")
    spec = load_spec(CONFIG_DIR / "fraud.yaml")
    assert cross_check(spec) == []
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert [i.field for i in caught.value.issues] == ["features.transaction.request.abroad"]
